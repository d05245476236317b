import Foundation
import ReplicaObjectStore
import ReplicaStore
import ReplicaSystem
import Synchronization

/// A test double of the bucket (not of the store): the product's `FileBucket` (a local
/// directory whose files are the objects, with S3's semantics where the store relies on them)
/// with a fault hook: `failPuts` makes puts and uploads of matching keys fail as a lost
/// connection would, to cut a commit short at a chosen object.
final class DirectoryBucket: ObjectBucket {
    let files: FileBucket
    let failPuts = Mutex<(@Sendable (String) -> Bool)?>(nil)

    init(root: String) throws { files = try FileBucket(root: root) }

    var location: String { files.location }

    /// The file holding `key`.
    func path(_ key: String) -> String { files.root + "/" + key }

    private func checkFault(_ key: String) throws {
        if let fail = failPuts.withLock({ $0 }), fail(key) {
            throw ReplicaError("connection to \(location) lost (test fault on \(key))", kind: .recoverable)
        }
    }

    @discardableResult
    func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        try checkFault(key)
        return try files.put(key, bytes, condition: condition)
    }

    @discardableResult
    func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        try checkFault(key)
        return try files.upload(key, from: source, partSize: partSize, progress: progress)
    }

    func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? { try files.get(key, range: range) }
    func head(_ key: String) throws -> ObjectInfo? { try files.head(key) }
    func list(prefix: String) throws -> [ObjectInfo] { try files.list(prefix: prefix) }
    func delete(_ key: String) throws { try files.delete(key) }
    func abortUploads(prefix: String) throws { try files.abortUploads(prefix: prefix) }

    /// Every key (tests compare what a step left behind).
    var keys: [String] { ((try? list(prefix: "")) ?? []).map(\.key) }
}
