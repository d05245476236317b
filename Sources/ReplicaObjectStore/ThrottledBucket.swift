import ReplicaStore

/// A bucket whose writes wait on a bandwidth limit (`--max-bandwidth`): `put` pays its bytes
/// before it sends them, `upload` its first part (a small log's single PUT) before and the
/// others as the upload reports them stored, so an upload returns only once its bytes fit
/// the limit. Reads are not
/// throttled. Concurrent writers (the initial copy's chunk lanes) share the limit through
/// `throttle`, which blocks until the bytes may go.
final class ThrottledBucket: ObjectBucket {
    let inner: any ObjectBucket
    let throttle: @Sendable (Int) -> Void

    init(_ inner: any ObjectBucket, throttle: @escaping @Sendable (Int) -> Void) {
        self.inner = inner
        self.throttle = throttle
    }

    var location: String { inner.location }

    /// Pays `bytes` in one call: the limiter credits the time after a wait up to what the last
    /// call paid, so one call per request lets a whole request's sending (and the commit's
    /// other requests) count, as for a receiver's requests.
    func pay(_ bytes: Int64) {
        if bytes > 0 { throttle(Int(bytes)) }
    }

    @discardableResult
    func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        pay(Int64(bytes.count))
        return try inner.put(key, bytes, condition: condition)
    }

    @discardableResult
    func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        // The first part (all of a single PUT) is paid before it goes, like a put: a sender
        // that pays before it sends has its sending time credited by the limiter; the other
        // parts are paid as they are reported stored.
        let size = try source.size()
        var paid = min(size, Int64(max(partSize, S3Bucket.minimumPartSize)))
        pay(paid)
        let etag = try inner.upload(key, from: source, partSize: partSize) { done in
            if done > paid {
                self.pay(done - paid)
                paid = done
            }
            progress?(done)
        }
        // An upload that reported less than its size (a resumed one keeps stored parts) pays the rest.
        if size > paid { pay(size - paid) }
        return etag
    }

    func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? { try inner.get(key, range: range) }
    func head(_ key: String) throws -> ObjectInfo? { try inner.head(key) }
    func list(prefix: String) throws -> [ObjectInfo] { try inner.list(prefix: prefix) }
    func delete(_ key: String) throws { try inner.delete(key) }
    func abortUploads(prefix: String) throws { try inner.abortUploads(prefix: prefix) }
}
