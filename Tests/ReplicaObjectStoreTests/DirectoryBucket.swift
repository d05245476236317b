import Crypto
import Foundation
import ReplicaObjectStore
import ReplicaStore
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A test double of the bucket (not of the store): a local directory whose files are the
/// objects, with S3's semantics where the store relies on them (conditional puts, MD5 ETags
/// and multipart ETags, ranges, sorted listings). `failPuts` makes puts of matching keys fail
/// as a lost connection would, to cut a commit short at a chosen object.
final class DirectoryBucket: ObjectBucket {
    let root: String
    let failPuts = Mutex<(@Sendable (String) -> Bool)?>(nil)
    private let lock = Mutex(())

    init(root: String) throws {
        self.root = root
        try FileSystem.mkdirs(root)
    }

    var location: String { "dir-bucket:\(root)" }

    func path(_ key: String) -> String { root + "/" + key }

    private func checkFault(_ key: String) throws {
        if let fail = failPuts.withLock({ $0 }), fail(key) {
            throw ReplicaError("connection to \(location) lost (test fault on \(key))", kind: .recoverable)
        }
    }

    private static func md5(_ bytes: [UInt8]) -> String { Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    private func write(_ key: String, _ bytes: [UInt8]) throws {
        let p = path(key)
        try FileSystem.mkdirs(String(p[..<p.lastIndex(of: "/")!]))
        try bytes.withUnsafeBytes { try FileSystem.writeAtomically(p, $0) }
    }

    @discardableResult
    func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        try checkFault(key)
        return try lock.withLock { _ in
            let existing = try? FileSystem.readFile(path(key))
            switch condition {
            case .none: break
            case .ifAbsent:
                if existing != nil { throw ReplicaError("\(key): precondition failed", kind: .recoverable, code: .preconditionFailed) }
            case .ifMatch(let tag):
                guard let existing, Self.md5(existing) == tag else {
                    throw ReplicaError("\(key): precondition failed", kind: .recoverable, code: .preconditionFailed)
                }
            }
            try write(key, bytes)
            return "\"" + Self.md5(bytes) + "\""
        }
    }

    @discardableResult
    func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        try checkFault(key)
        let bytes = try FileSystem.readFile(source.localPath)
        try write(key, bytes)
        progress?(Int64(bytes.count))
        guard bytes.count > partSize else { return "\"" + Self.md5(bytes) + "\"" }
        var parts: [UInt8] = []
        var n = 0
        for at in stride(from: 0, to: bytes.count, by: partSize) {
            parts += Array(Insecure.MD5.hash(data: bytes[at..<min(bytes.count, at + partSize)]))
            n += 1
        }
        return "\"" + Self.md5(parts) + "-\(n)\""
    }

    func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? {
        guard let bytes = try? FileSystem.readFile(path(key)) else { return nil }
        guard let range else { return bytes }
        let lo = Int(min(range.lowerBound, Int64(bytes.count))), hi = Int(min(range.upperBound, Int64(bytes.count)))
        return Array(bytes[lo..<hi])
    }

    func head(_ key: String) throws -> ObjectInfo? {
        guard let bytes = try? FileSystem.readFile(path(key)) else { return nil }
        return ObjectInfo(key: key, size: Int64(bytes.count), etag: Self.md5(bytes))
    }

    func list(prefix: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        func walk(_ dir: String, _ keyPrefix: String) {
            for name in (try? FileSystem.list(dir)) ?? [] where !name.hasPrefix(".") {
                let p = dir + "/" + name, key = keyPrefix + name
                if FileSystem.isDirectory(p) {
                    walk(p, key + "/")
                } else if key.hasPrefix(prefix), let st = try? FileSystem.stat(p) {
                    out.append(ObjectInfo(key: key, size: Int64(st.st_size), etag: ""))
                }
            }
        }
        walk(root, "")
        return out.sorted { $0.key < $1.key }
    }

    func delete(_ key: String) throws {
        _ = unlink(path(key))
    }

    /// Every key (tests compare what a step left behind).
    var keys: [String] { ((try? list(prefix: "")) ?? []).map(\.key) }
}
