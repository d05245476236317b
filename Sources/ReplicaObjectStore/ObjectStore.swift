import Foundation
import ReplicaLog
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A target store in an object store (S3 API: Ceph RGW, MinIO, AWS S3) reached through an
/// `ObjectBucket`. Shipped logs become immutable objects, the base is content-addressed chunk
/// objects, and every change ends with one conditional write of a new catalog generation, so
/// a reader sees a point whole or not at all and a crash leaves at most unreferenced objects
/// that `recover` or the next merge deletes. Points are read by range GETs through a bounded
/// local cache. Layout and reasons: docs/object-store.md.
public final class ObjectStore: TargetStore {
    public let bucket: any ObjectBucket
    /// Bytes per base chunk (4 MiB by default; tests use small ones).
    public let chunkSize: Int
    /// Multipart part size of log uploads.
    public let partSize: Int
    /// Bytes per log segment a reader fetches and checks at once.
    public let segmentSize: Int
    /// Base chunks a cold sequential read fetches ahead.
    public let readAhead: Int
    let cache: ObjectCache
    private let target: String?

    /// The cache directory when none is given: `REPLICAFS_S3_CACHE`, else
    /// `/var/cache/replicafs/s3`.
    public static var defaultCacheDirectory: String {
        ProcessInfo.processInfo.environment["REPLICAFS_S3_CACHE"] ?? "/var/cache/replicafs/s3"
    }

    /// A store over `bucket`. `cacheDirectory` holds what readers fetched, at most
    /// `cacheLimit` bytes (`REPLICAFS_S3_CACHE_LIMIT` when nil, else 2 GiB). `target` is the
    /// `--target` text the store was opened by (its `location`, which the failover daemon
    /// opens again), the bucket's own description when nil.
    public init(bucket: any ObjectBucket, target: String? = nil, chunkSize: Int = 4 << 20, partSize: Int = 16 << 20, segmentSize: Int = 4 << 20,
                readAhead: Int = 4, cacheDirectory: String? = nil, cacheLimit: Int64? = nil) throws {
        guard chunkSize >= 4096, chunkSize <= 64 << 20, chunkSize % 4096 == 0 else {
            throw ReplicaError("object store chunk size \(chunkSize) must be a multiple of 4 KiB up to 64 MiB", kind: .nonRecoverable)
        }
        self.bucket = bucket
        self.target = target
        self.chunkSize = chunkSize
        self.partSize = max(5 << 20, partSize)
        self.segmentSize = segmentSize
        self.readAhead = readAhead
        let limit = cacheLimit ?? ProcessInfo.processInfo.environment["REPLICAFS_S3_CACHE_LIMIT"].flatMap(Int64.init) ?? (2 << 30)
        cache = try ObjectCache(directory: cacheDirectory ?? Self.defaultCacheDirectory, diskLimit: limit)
    }

    public var location: String { target ?? bucket.location }

    // MARK: the catalog

    /// The newest catalog generation of `vm`, nil when the store holds none.
    func catalogIfAny(_ vm: String) throws -> ObjectCatalog? {
        for _ in 0..<5 {
            guard let last = try bucket.list(prefix: ObjectLayout.catalogs(vm)).last else { return nil }
            // Deleted between the listing and the GET (an old generation cleaned up): list again.
            guard let bytes = try bucket.get(last.key, range: nil) else { continue }
            let catalog = try ObjectCatalog.decode(bytes, key: last.key)
            guard catalog.generation == ObjectLayout.generation(ofCatalogKey: last.key) else {
                throw ReplicaError("\(last.key): catalog says generation \(catalog.generation)", kind: .nonRecoverable)
            }
            return catalog
        }
        throw ReplicaError("catalog of VM \(vm) in \(location) keeps changing", kind: .recoverable)
    }

    func latestCatalog(_ vm: String) throws -> ObjectCatalog {
        guard let catalog = try catalogIfAny(vm) else {
            throw ReplicaError("unknown VM \(vm) in target store \(location)", kind: .nonRecoverable, code: .unknownVM)
        }
        return catalog
    }

    /// Writes `catalog` as the generation after `previous` (0: the first), only if no other
    /// writer took that generation: the commit step of every change.
    func publish(_ catalog: inout ObjectCatalog, after previous: Int) throws {
        catalog.generation = previous + 1
        try bucket.put(ObjectLayout.catalog(catalog.store.vm, catalog.generation), catalog.encoded(), condition: .ifAbsent)
        // Generations before the previous one are no longer read (a reader holds its own copy).
        if previous >= 2 { try? bucket.delete(ObjectLayout.catalog(catalog.store.vm, previous - 1)) }
    }

    /// Applies `change` to the newest catalog and publishes the result (nil from `change`:
    /// nothing to change, nothing published); when another writer published first, `change`
    /// runs again on its catalog (it re-checks what it relies on).
    @discardableResult
    func mutate<T>(_ vm: String, _ change: (inout ObjectCatalog) throws -> T?) throws -> T? {
        var attempt = 0
        while true {
            var catalog = try latestCatalog(vm)
            let previous = catalog.generation
            guard let result = try change(&catalog) else { return nil }
            do {
                try publish(&catalog, after: previous)
                return result
            } catch let error as ReplicaError where error.code == .preconditionFailed && attempt < 8 {
                attempt += 1
                usleep(UInt32(20_000 * attempt))
            }
        }
    }

    // MARK: objects

    /// An object the catalog refers to, checked against its SHA-256 (through the cache).
    func fetch(_ ref: ObjectRef, what: String) throws -> [UInt8] {
        try cache.bytes(sha256: ref.sha256, what: what + " (\(ref.key))") {
            guard let bytes = try bucket.get(ref.key, range: nil) else { throw ObjectMissing() }
            return bytes
        }
    }

    /// Puts `bytes` as `key` and checks the ETag the bucket computed from what it received.
    @discardableResult
    func putChecked(_ key: String, _ bytes: [UInt8]) throws -> ObjectRef {
        let etag = try bucket.put(key, bytes, condition: .none)
        let expected = bytes.withUnsafeBytes { ObjectDigest.expectedETags($0, partSize: 0) }
        // A SealedBucket's ETag is of the sealed bytes, which it checked itself.
        guard bucket is SealedBucket || expected.contains(ObjectDigest.plainETag(etag)) else {
            throw ReplicaError("\(key): the bucket stored other bytes than were sent (ETag \(etag))", kind: .recoverable)
        }
        return ObjectRef(key: key, size: Int64(bytes.count), sha256: ObjectDigest.sha256(bytes))
    }

    /// Uploads a verified local log as `key` (multipart when large, resumable) and makes sure
    /// the bucket holds exactly the bytes verified: by the ETag S3 computed from what it
    /// received, else by reading the object back.
    func uploadVerified(_ key: String, path: String, built: LogIndex.Built, progress: ((Int64) -> Void)? = nil) throws -> ObjectRef {
        let etag = try bucket.upload(key, from: SourceFile(path), partSize: partSize, progress: progress)
        if !(bucket is SealedBucket), !built.etags.contains(ObjectDigest.plainETag(etag)) {
            try checkByReading(key, size: built.size, sha256: built.sha256)
        }
        return ObjectRef(key: key, size: built.size, sha256: built.sha256)
    }

    /// Reads `key` back in pieces and compares its size and SHA-256.
    func checkByReading(_ key: String, size: Int64, sha256: String) throws {
        var hasher = SHA256Stream()
        var at: Int64 = 0
        while at < size {
            let n = min(Int64(16 << 20), size - at)
            guard let piece = try bucket.get(key, range: at..<(at + n)), Int64(piece.count) == n else {
                throw ReplicaError("\(key): stored object is shorter than the \(size) bytes sent", kind: .recoverable)
            }
            hasher.update(piece)
            at += n
        }
        guard let info = try bucket.head(key), info.size == size, hasher.finalize() == sha256 else {
            throw ReplicaError("\(key): stored object differs from the verified log", kind: .recoverable)
        }
    }

    // MARK: VMs

    public func hasVM(_ vm: String) -> Bool {
        ((try? bucket.list(prefix: ObjectLayout.catalogs(vm))) ?? []).isEmpty == false
    }

    public func catalog(_ vm: String) throws -> StoreCatalog { try latestCatalog(vm).store }

    public func openPoint(vm: String, disk: String, point: PointSelector?) throws -> any PointReader {
        let catalog = try latestCatalog(vm)
        let id = try point.map { try resolve($0, in: catalog.store, vm: vm).id }
        return try ObjectPointReader(store: self, vm: vm, disk: disk, catalog: catalog, pointID: id)
    }

    func resolve(_ selector: PointSelector, in catalog: StoreCatalog, vm: String) throws -> RecoveryPoint {
        try catalog.point(selector, vm: vm)
    }

    /// Deletes every object of the VM, the catalogs first (from then on the VM is gone).
    public func delete(vm: String) throws {
        guard let catalog = try catalogIfAny(vm) else { return }
        if let failover = catalog.failover {
            throw ReplicaError("VM \(vm) is failed over (\(failover.summary)): its replica stays until failback or cleanup")
        }
        for object in try bucket.list(prefix: ObjectLayout.catalogs(vm)) { try bucket.delete(object.key) }
        for object in try bucket.list(prefix: ObjectLayout.root(vm)) { try bucket.delete(object.key) }
    }

    // MARK: metadata

    public func metadata(vm: String) throws -> VMMetadata? {
        let key = ObjectLayout.metadata(vm)
        guard let bytes = try bucket.get(key, range: nil) else { return nil }
        do {
            return try JSONDecoder().decode(VMMetadata.self, from: Data(bytes))
        } catch {
            throw ReplicaError("\(key): unreadable VM metadata (\(error))")
        }
    }

    public func saveMetadata(_ metadata: VMMetadata) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try putChecked(ObjectLayout.metadata(metadata.vm), Array(try encoder.encode(metadata)))
    }

    // MARK: shipping

    /// The logs cross at commit, where they are verified, uploaded and checked; nothing is
    /// staged here (compression does not apply: the objects are what readers range-read).
    public func receive(vm: String, logs: [String: [SourceFile]], compress: Bool) throws -> (logs: [String: [SourceFile]], bytesSent: Int64) {
        (logs, try logs.values.joined().reduce(Int64(0)) { $0 + (try $1.size()) })
    }

    public func discardReceived(vm: String) {}

    public func localFailoverDirectory(vm: String) -> String? { nil }
}
