import AsyncHTTPClient
import ReplicaSystem

/// How an S3 answer or a lost connection becomes a `ReplicaError` the engine acts on:
/// waiting can fix a dropped connection, a timeout, a 5xx or throttling (`.recoverable`, the
/// engine's back-off retries); it cannot fix refused credentials, a missing bucket or a
/// malformed request (`.nonRecoverable`); a failed condition has code `.preconditionFailed`.
enum S3Failure {
    /// The S3 error document's code and message (`<Error><Code>…</Code><Message>…</Message>`).
    static func errorCode(_ body: [UInt8]) -> (code: String, message: String?) {
        guard let root = S3XMLElement.parse(body), root.name == "Error" else { return ("", nil) }
        return (root.value("Code") ?? "", root.value("Message"))
    }

    /// Whether a request that failed this way is worth sending again at once.
    static func isTransient(status: Int, code: String) -> Bool {
        status >= 500 || status == 408 || status == 429 || code == "SlowDown" || code == "RequestTimeout"
            || code == "OperationAborted" || code == "ConcurrentModification"
    }

    /// The error for an HTTP answer that is not a success.
    static func error(status: Int, body: [UInt8], operation: String, what: String, bucket: String,
                      endpoint: S3Endpoint) -> ReplicaError {
        var (code, message) = errorCode(body)
        if code.isEmpty {   // HEAD answers carry no body
            code = status == 403 ? "AccessDenied" : status == 404 ? "NotFound" : status == 412 ? "PreconditionFailed" : "HTTP \(status)"
        }
        let detail = message.map { $0.isEmpty ? "" : ": \($0)" } ?? ""
        if status == 403 || ["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                             "TokenRefreshRequired", "AccessDenied"].contains(code) {
            return ReplicaError("credentials refused by \(endpoint): \(code)", kind: .nonRecoverable)
        }
        if code == "NoSuchBucket" {
            return ReplicaError("bucket \(bucket) does not exist at \(endpoint)", kind: .nonRecoverable)
        }
        if status == 412 || code == "PreconditionFailed" {
            return ReplicaError("\(what) at \(endpoint) was changed by another writer: conditional \(operation) refused (\(code))",
                                kind: .nonRecoverable, code: .preconditionFailed)
        }
        if code == "RequestTimeTooSkewed" {
            return ReplicaError("\(endpoint) refused \(operation) \(what): this host's clock differs too much from the server's (RequestTimeTooSkewed)",
                                kind: .nonRecoverable)
        }
        let kind: ReplicaError.Kind = isTransient(status: status, code: code) ? .recoverable : .nonRecoverable
        return ReplicaError("S3 \(operation) \(what) at \(endpoint) failed: \(status) \(code)\(detail)", kind: kind)
    }

    /// The error for a request that got no answer (refused, reset, timed out): recoverable.
    static func error(transport: Error, operation: String, what: String, endpoint: S3Endpoint) -> ReplicaError {
        ReplicaError("S3 \(operation) \(what) at \(endpoint) failed: \(describe(transport))", kind: .recoverable)
    }

    /// A short text for a transport error (NIO's own descriptions are long).
    static func describe(_ error: Error) -> String {
        if let e = error as? HTTPClientError {
            switch e {
            case .remoteConnectionClosed: return "the server closed the connection"
            case .readTimeout: return "no answer in time (read timeout)"
            case .connectTimeout: return "connect timed out"
            case .deadlineExceeded: return "no answer in time (deadline)"
            default: break
            }
        }
        let text = String(describing: error)
        let lower = text.lowercased()
        if lower.contains("connection refused") { return "connection refused" }
        if lower.contains("connection reset") { return "connection reset" }
        if lower.contains("broken pipe") { return "connection lost (broken pipe)" }
        return text
    }
}
