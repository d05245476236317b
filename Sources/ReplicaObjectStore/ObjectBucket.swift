import ReplicaStore

/// One object as a listing or HEAD shows it.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var etag: String

    public init(key: String, size: Int64, etag: String) {
        self.key = key
        self.size = size
        self.etag = etag
    }
}

/// When a `put` may replace what is there: the object store's one atomic step (a catalog
/// written last) relies on it.
public enum PutCondition: Sendable, Equatable {
    /// Always write.
    case none
    /// Only when no object has the key (`If-None-Match: *`).
    case ifAbsent
    /// Only when the object still has this ETag (`If-Match`).
    case ifMatch(String)
}

/// The few object operations the object store is built on: S3's, kept small so the store's
/// layout logic runs the same over Ceph RGW (`S3Bucket`) and over a local directory in quick
/// unit tests. Keys are relative to the bucket's prefix. Failures are `ReplicaError`s: a lost
/// connection or a 5xx is `.recoverable`, refused credentials or a missing bucket are
/// `.nonRecoverable`, a failed `PutCondition` has code `.preconditionFailed`.
public protocol ObjectBucket: Sendable {
    /// Where the bucket is, for messages ("s3://bucket/prefix at http://127.0.0.1:7480").
    var location: String { get }

    /// Writes `bytes` as the whole object `key` when `condition` holds; returns its ETag.
    @discardableResult
    func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String

    /// Uploads `source` (bytes on this host) as the object `key`: one PUT when small, else a
    /// multipart upload in parts of `partSize`, several parts in flight, resuming an
    /// interrupted upload of the same key from its last stored part. Returns the ETag.
    @discardableResult
    func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String

    /// The object's bytes (`range` of them when given); nil when no object has the key.
    func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]?

    /// The object's size and ETag; nil when no object has the key.
    func head(_ key: String) throws -> ObjectInfo?

    /// Every object whose key starts with `prefix`, in key order.
    func list(prefix: String) throws -> [ObjectInfo]

    /// Deletes `key`; deleting a missing key is not an error.
    func delete(_ key: String) throws

    /// Aborts every unfinished multipart upload of a key under `prefix`: the parts a failed
    /// upload stored, which no listing shows and which the retry may never resume (its logs
    /// can be cut differently). A bucket without multipart uploads has none.
    func abortUploads(prefix: String) throws
}

extension ObjectBucket {
    public func abortUploads(prefix: String) throws {}
}
