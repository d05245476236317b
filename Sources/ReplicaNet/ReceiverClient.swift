import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import ReplicaStore
import ReplicaSystem

/// The sender's side of the receiver protocol: one request at a time, waited for on the
/// caller's thread (`execute(request:).wait()`; never call it from an event-loop thread).
/// Every client in the process shares one `HTTPClient` (connection pool, event loops), which
/// lives as long as the process, like `HTTPClient.shared`: a daemon replicates until it exits,
/// and a command ends with the process, so there is no moment to shut it down early. Errors
/// come back as `ReplicaError`s: the receiver's own (kind and code kept), a connection that
/// dropped or could not be made (recoverable), a refused TLS handshake (not recoverable).
public struct ReceiverClient: Sendable {
    /// The process's one HTTP client (see above).
    static let shared = HTTPClient(eventLoopGroupProvider: .singleton, configuration: {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(300)),
            decompression: .disabled)
        configuration.httpVersion = .http1Only
        // A refused or failed connection fails the request at once: the callers that must
        // outlast a receiver restart retry on their own (`resuming`, 0.1 s doubling to 2 s),
        // and with the pool's own retries every request to a receiver that is down took the
        // whole 10 s connect timeout (`replicafs vms` with three such VMs registered: 30 s).
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }())

    /// `https://host:port` (or `http://` without TLS, tests only).
    public let base: String
    /// What errors name: `replicafs://host:port`.
    public let location: String
    let tls: TLSConfiguration?
    /// Maps a TLS failure to an operator's error (nil: not a TLS failure).
    let tlsFailure: @Sendable (any Error) -> ReplicaError?

    public init(host: String, port: Int, tls: TLSConfiguration?,
                tlsFailure: @escaping @Sendable (any Error) -> ReplicaError? = { _ in nil }) {
        let h = host.contains(":") ? "[\(host)]" : host
        base = (tls == nil ? "http://" : "https://") + h + ":" + String(port)
        location = ReplicaNet.scheme + "://" + h + ":" + String(port)
        self.tls = tls
        self.tlsFailure = tlsFailure
    }

    /// An answer: status, the `replicafs-size` header if any, the body.
    public struct Answer {
        public var status: Int
        public var size: Int64?
        public var body: [UInt8]
    }

    static func segment(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-_."))) ?? s
    }

    /// Sends one request and waits for its whole answer; a non-2xx answer throws the
    /// receiver's error.
    @discardableResult
    public func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], headers: [(String, String)] = [],
                     body: [UInt8]? = nil, contentType: String = "application/octet-stream") throws -> Answer {
        try call(method, path, query: query, headers: headers, payload: body.map { .bytes($0) }, contentType: contentType)
    }

    /// The same with the body in a `ByteBuffer`, sent as it is (a log chunk read straight
    /// into it: no copy into an array and out again).
    @discardableResult
    public func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], headers: [(String, String)] = [],
                     buffer: ByteBuffer, contentType: String = "application/octet-stream") throws -> Answer {
        try call(method, path, query: query, headers: headers, payload: .byteBuffer(buffer), contentType: contentType)
    }

    func call(_ method: HTTPMethod, _ path: String, query: [String: String], headers: [(String, String)],
              payload body: HTTPClient.Body?, contentType: String) throws -> Answer {
        var url = base + ReceiverAPI.prefix + path
        if !query.isEmpty {
            url += "?" + query.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.segment($0.value))" }.joined(separator: "&")
        }
        var fields = HTTPHeaders(headers)
        if body != nil { fields.add(name: "content-type", value: contentType) }
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: url, method: method, headers: fields,
                                             body: body, tlsConfiguration: tls)
        } catch {
            throw ReplicaError("bad receiver address \(location): \(error)", kind: .nonRecoverable)
        }
        let response: HTTPClient.Response
        do {
            response = try Self.shared.execute(request: request).wait()
        } catch {
            throw mapTransport(error)
        }
        let bytes = response.body.map { Array($0.readableBytesView) } ?? []
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            if let e = try? JSONDecoder().decode(ReceiverAPI.ErrorBody.self, from: Data(bytes)) {
                if let errno = e.errno, e.kind != "nonRecoverable" || errno == EACCES || errno == EROFS {
                    throw SystemError(errno: errno, operation: "receiver \(location)", path: e.error)
                }
                throw e.replicaError
            }
            throw ReplicaError("receiver \(location) answered \(status) to \(method) \(path)",
                               kind: status >= 500 ? .recoverable : .nonRecoverable)
        }
        return Answer(status: status, size: response.headers.first(name: "replicafs-size").flatMap(Int64.init), body: bytes)
    }

    /// A JSON request and its decoded answer.
    /// With `body` the request carries those raw bytes instead of `send` as JSON.
    public func json<T: Decodable>(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], headers: [(String, String)] = [],
                                   send: (any Encodable)? = nil, body: [UInt8]? = nil, as type: T.Type) throws -> T {
        let answer = try body != nil
            ? call(method, path, query: query, headers: headers, body: body)
            : call(method, path, query: query, headers: headers, body: try send.map { Array(try JSONEncoder().encode($0)) }, contentType: "application/json")
        return try decode(answer, as: type, method, path)
    }

    /// A raw-body request (a `ByteBuffer`) and its decoded JSON answer.
    public func json<T: Decodable>(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], headers: [(String, String)] = [],
                                   buffer: ByteBuffer, as type: T.Type) throws -> T {
        try decode(try call(method, path, query: query, headers: headers, buffer: buffer), as: type, method, path)
    }

    /// An answer's JSON body as `type`; anything else is a recoverable error naming the request.
    func decode<T: Decodable>(_ answer: Answer, as type: T.Type, _ method: HTTPMethod, _ path: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(answer.body))
        } catch {
            throw ReplicaError("receiver \(location): unreadable answer to \(method) \(path)", kind: .recoverable)
        }
    }

    /// A failure to reach the receiver or to keep the connection: recoverable, except a TLS
    /// handshake the receiver or this side refused (certificates need a person).
    func mapTransport(_ error: Error) -> ReplicaError {
        if let refused = tlsFailure(error) { return refused }
        if error is NIOSSLError || error is BoringSSLError {
            return ReplicaError("receiver \(location): TLS refused: \(error)", kind: .nonRecoverable)
        }
        return ReplicaError("receiver \(location) unreachable: \(error)", kind: .recoverable)
    }

    /// Whether `error` is a connection that could not be made or dropped (worth asking again),
    /// rather than an answer of the receiver.
    public func dropped(_ error: Error) -> Bool {
        guard let e = error as? ReplicaError, e.kind == .recoverable else { return false }
        return e.description.hasPrefix("receiver \(location) unreachable: ")
    }
}
