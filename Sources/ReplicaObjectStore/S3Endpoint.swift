import Foundation
import ReplicaSystem

/// An S3 endpoint URL: `http(s)://HOST[:PORT]`, nothing after the authority.
public struct S3Endpoint: Sendable, Equatable, CustomStringConvertible {
    public let scheme: String
    public let host: String
    public let port: Int

    public init(parsing text: String) throws {
        func bad(_ why: String) -> ReplicaError {
            ReplicaError("malformed S3 endpoint '\(text)': \(why) (expected http(s)://HOST[:PORT])", kind: .nonRecoverable, code: .badRequest)
        }
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let sep = rest.range(of: "://") else { throw bad("no scheme") }
        let scheme = rest[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { throw bad("the scheme must be http or https") }
        let authority = rest[sep.upperBound...]
        if authority.contains(where: { "/?#@ ".contains($0) }) { throw bad("only a host and port may follow the scheme") }
        var host = String(authority)
        var port = scheme == "https" ? 443 : 80
        if host.hasPrefix("[") {   // IPv6 literal
            guard let close = host.firstIndex(of: "]") else { throw bad("unclosed IPv6 address") }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { throw bad("bad port") }
                port = p
            } else if !after.isEmpty { throw bad("bad port") }
            host = String(host[...close])
        } else if let colon = host.lastIndex(of: ":") {
            guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else { throw bad("bad port") }
            port = p
            host = String(host[..<colon])
        }
        if host.isEmpty { throw bad("no host") }
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// The `Host` header (and signed host): the port only when not the scheme's default.
    public var hostHeader: String {
        port == (scheme == "https" ? 443 : 80) ? host : "\(host):\(port)"
    }

    public var description: String { "\(scheme)://\(hostHeader)" }
}
