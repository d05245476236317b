import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import ReplicaStore
import ReplicaSystem
import Synchronization

/// An `ObjectBucket` on an S3 API (Ceph RGW, MinIO, AWS S3): path-style requests signed with
/// Signature Version 4 (`SigV4Signer`), sent with AsyncHTTPClient. Every method is synchronous:
/// it waits on the request's EventLoopFuture from the caller's thread (never on an event-loop
/// thread, never on a Swift Task), so the store and the FUSE paths call it like a file.
///
/// Each request is retried a few times at once (0.2 s, 0.5 s, 1 s apart) after a lost
/// connection, a timeout or a 5xx; what still fails is a `.recoverable` `ReplicaError` and the
/// engine's back-off (RetryPolicy) takes over. Refused credentials and a missing bucket are
/// `.nonRecoverable` with a message naming the endpoint; a failed `PutCondition` has code
/// `.preconditionFailed`.
public final class S3Bucket: ObjectBucket {
    public let url: S3URL
    public let configuration: S3Configuration
    /// Parts of one multipart upload in flight at once.
    public let parallelism: Int
    public var location: String { "\(url) at \(configuration.endpoint)" }

    let signer: SigV4Signer
    let client: HTTPClient
    /// Delays before the quick retries of one request.
    let retryDelays: [Double]
    private let state = Mutex(S3Counters())
    /// Set once any request showed the bucket exists: a HEAD's bare 404 then means "no such
    /// key" without asking again.
    private let bucketSeen = Atomic<Bool>(false)

    /// The bucket `target` (`s3://BUCKET[/PREFIX]`) names, reached as `options` and the
    /// environment say (`S3Configuration.resolve`). Makes no request.
    public convenience init(target: String, options: TargetOptions = TargetOptions(),
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            parallelism: Int = 6) throws {
        let url = try S3URL(parsing: target)
        try self.init(url: url, configuration: S3Configuration.resolve(options: options, environment: environment),
                      parallelism: parallelism)
    }

    public init(url: S3URL, configuration: S3Configuration, parallelism: Int = 6, retryDelays: [Double] = [0.2, 0.5, 1.0]) {
        self.url = url
        self.configuration = configuration
        self.parallelism = max(1, parallelism)
        self.retryDelays = retryDelays
        signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)
        client = S3Bucket.sharedClient
    }

    /// One HTTP client for every bucket of the process (its connection pool and event loops);
    /// never shut down, like AsyncHTTPClient's own shared client, but with S3's settings:
    /// a connection refused fails at once (our retries decide), answers must keep coming.
    static let sharedClient: HTTPClient = {
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        pool.retryConnectionEstablishment = false
        let config = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                              timeout: .init(connect: .seconds(10), read: .seconds(120)),
                                              connectionPool: pool, decompression: .disabled)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
    }()

    /// What this bucket has done so far.
    public var counters: S3Counters { state.withLock { $0 } }

    func count(_ change: (inout S3Counters) -> Void) { state.withLock { change(&$0) } }

    // MARK: ObjectBucket

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        var headers: [(String, String)] = [("Content-MD5", Data(Insecure.MD5.hash(data: bytes)).base64EncodedString())]
        switch condition {
        case .none: break
        case .ifAbsent: headers.append(("If-None-Match", "*"))
        // Unquoted: Ceph RGW (16) compares the header with the bare ETag; AWS and MinIO take either.
        case .ifMatch(let etag): headers.append(("If-Match", Self.unquoted(etag)))
        }
        var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        do {
            let response = try send(.PUT, key: key, headers: headers, body: buffer, payload: .hash(of: bytes),
                                    operation: "PUT", accept: [200, 404])
            if response.status == 404 {
                // AWS answers If-Match on a missing key with NoSuchKey; RGW with 412. Both: the condition failed.
                guard case .ifMatch = condition else {
                    throw S3Failure.error(status: 404, body: response.bytes, operation: "PUT", what: "\(url)/\(key)",
                                          bucket: url.bucket, endpoint: configuration.endpoint)
                }
                throw S3Failure.error(status: 412, body: [], operation: "PUT", what: "\(url)/\(key)",
                                      bucket: url.bucket, endpoint: configuration.endpoint)
            }
            count { $0.bytesSent += Int64(bytes.count) }
            return Self.etag(response.headers)
        } catch let error as ReplicaError where error.code == .preconditionFailed && error.description.contains(Self.afterRetry) {
            // Refused only on a retry: our own first attempt may have been stored and its answer
            // lost. The object then carries our bytes' MD5 as its ETag.
            if condition != .none, let info = try head(key), info.etag == SigV4Signer.hex(Insecure.MD5.hash(data: bytes)) {
                return info.etag
            }
            throw error
        }
    }

    public func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? {
        var headers: [(String, String)] = []
        if let range {
            if range.isEmpty { return [] }
            headers.append(("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        let response = try send(.GET, key: key, headers: headers, operation: "GET", accept: [200, 206, 404, 416])
        switch response.status {
        case 404: return nil
        case 416: return []   // the range starts at or after the end
        default: return response.bytes
        }
    }

    public func head(_ key: String) throws -> ObjectInfo? {
        let response = try send(.HEAD, key: key, operation: "HEAD", accept: [200, 404])
        if response.status == 404 {
            try checkBucket()
            return nil
        }
        let size = response.headers.first(name: "Content-Length").flatMap { Int64($0) } ?? 0
        return ObjectInfo(key: key, size: size, etag: Self.etag(response.headers))
    }

    public func list(prefix: String) throws -> [ObjectInfo] {
        var result: [ObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", url.prefix + prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try send(.GET, key: nil, query: query, operation: "LIST", accept: [200])
            guard let root = S3XMLElement.parse(response.bytes), root.name == "ListBucketResult" else {
                throw ReplicaError("S3 LIST \(prefix) at \(location): the answer is not a ListBucketResult", kind: .recoverable)
            }
            for item in root.all("Contents") {
                guard let full = item.value("Key"), full.hasPrefix(url.prefix) else { continue }
                result.append(ObjectInfo(key: String(full.dropFirst(url.prefix.count)),
                                         size: item.value("Size").flatMap { Int64($0) } ?? 0,
                                         etag: Self.unquoted(item.value("ETag") ?? "")))
            }
            token = root.value("IsTruncated") == "true" ? root.value("NextContinuationToken") : nil
            if root.value("IsTruncated") == "true" && token == nil {
                throw ReplicaError("S3 LIST \(prefix) at \(location): truncated listing without a continuation token", kind: .recoverable)
            }
        } while token != nil
        return result
    }

    public func delete(_ key: String) throws {
        _ = try send(.DELETE, key: key, operation: "DELETE", accept: [200, 204, 404])
    }

    // MARK: Bucket

    /// Creates the bucket; one that exists and is ours already is fine.
    public func createBucket() throws {
        let response = try send(.PUT, key: nil, operation: "CREATE BUCKET", accept: [200, 409])
        if response.status == 409 && S3Failure.errorCode(response.bytes).code != "BucketAlreadyOwnedByYou" {
            throw S3Failure.error(status: 409, body: response.bytes, operation: "CREATE BUCKET", what: url.bucket,
                                  bucket: url.bucket, endpoint: configuration.endpoint)
        }
    }

    /// Throws the "does not exist" or credentials error when the bucket cannot be used.
    public func checkBucket() throws {
        if bucketSeen.load(ordering: .relaxed) { return }
        let response = try send(.HEAD, key: nil, operation: "HEAD BUCKET", accept: [200, 404])
        if response.status == 404 {
            throw ReplicaError("bucket \(url.bucket) does not exist at \(configuration.endpoint)", kind: .nonRecoverable)
        }
    }

    // MARK: Requests

    /// One answered request: status, headers, body.
    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var bytes: [UInt8]
    }

    /// A marker in errors from a retried request (see `put`).
    static let afterRetry = "(after a retry)"

    /// Sends one signed request for `key` (nil: the bucket itself) and returns the answer when
    /// its status is in `accept`; retries at once after a lost connection or a 5xx; throws the
    /// mapped `ReplicaError` otherwise.
    func send(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: ByteBuffer? = nil, payload: SigV4Signer.Payload = .empty, operation: String,
              accept: Set<Int>) throws -> Response {
        let path = "/" + url.bucket + (key.map { "/" + url.prefix + $0 } ?? "")
        let what = key.map { "\(url)/\($0)" } ?? "s3://\(url.bucket)"
        let endpoint = configuration.endpoint
        var target = "\(endpoint.scheme)://\(endpoint.hostHeader)" + SigV4Signer.encodedPath(path)
        if !query.isEmpty {
            // A parameter without value goes as `name` (S3's own `?uploads`); signed as `name=`.
            target += "?" + query.map { SigV4Signer.encode($0.0, keepSlash: false) + ($0.1.isEmpty ? "" : "=" + SigV4Signer.encode($0.1, keepSlash: false)) }
                .joined(separator: "&")
        }
        var attempt = 0
        while true {
            let signed = signer.sign(method: method.rawValue, host: endpoint.hostHeader, path: path, query: query,
                                     headers: headers, payload: payload, date: Date())
            var httpHeaders = HTTPHeaders()
            httpHeaders.add(name: "Host", value: endpoint.hostHeader)
            for (name, value) in headers + signed { httpHeaders.add(name: name, value: value) }
            let transient: ReplicaError
            do {
                let request = try HTTPClient.Request(url: target, method: method, headers: httpHeaders,
                                                     body: body.map { .byteBuffer($0) })
                let response = try client.execute(request: request).wait()
                count { $0.requests += 1 }
                let status = Int(response.status.code)
                let bytes = response.body.map { Array($0.readableBytesView) } ?? []
                if accept.contains(status) && !(status == 404 && S3Failure.errorCode(bytes).code == "NoSuchBucket") {
                    if status < 300 { bucketSeen.store(true, ordering: .relaxed) }
                    return Response(status: status, headers: response.headers, bytes: bytes)
                }
                var error = S3Failure.error(status: status, body: bytes, operation: operation, what: what,
                                            bucket: url.bucket, endpoint: endpoint)
                if attempt > 0 { error = ReplicaError(error.description + " " + Self.afterRetry, kind: error.kind, code: error.code) }
                guard error.kind == .recoverable, S3Failure.isTransient(status: status, code: S3Failure.errorCode(bytes).code) else {
                    throw error
                }
                transient = error
            } catch let error as ReplicaError {
                throw error
            } catch let error as HTTPClientError where error == .invalidURL || error == .emptyHost {
                throw ReplicaError("S3 \(operation) \(what): bad request URL \(target)", kind: .nonRecoverable, code: .badRequest)
            } catch {
                transient = S3Failure.error(transport: error, operation: operation, what: what, endpoint: endpoint)
            }
            guard attempt < retryDelays.count else { throw transient }
            Thread.sleep(forTimeInterval: retryDelays[attempt])
            attempt += 1
            count { $0.retries += 1 }
        }
    }

    // MARK: ETags

    static func etag(_ headers: HTTPHeaders) -> String { unquoted(headers.first(name: "ETag") ?? "") }
    static func unquoted(_ etag: String) -> String {
        var e = Substring(etag)
        if e.hasPrefix("W/") { e = e.dropFirst(2) }
        if e.hasPrefix("\"") && e.hasSuffix("\"") && e.count >= 2 { e = e.dropFirst().dropLast() }
        return String(e)
    }
    static func quoted(_ etag: String) -> String { etag.hasPrefix("\"") ? etag : "\"\(etag)\"" }
}
