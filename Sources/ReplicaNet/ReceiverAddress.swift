import ReplicaSystem

/// A receiver's address: `replicafs://HOST[:PORT]` as a target (default port 8084), or
/// `HOST:PORT` to listen on. HOST is a name, an IPv4 address or an IPv6 address in brackets.
public struct ReceiverAddress: Sendable, Equatable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses a `--target` URL; anything beyond host and port (a path, a user, a query) is refused.
    public init(url: String) throws {
        let prefix = ReplicaNet.scheme + "://"
        guard url.hasPrefix(prefix) else { throw ReplicaError("bad receiver URL \(url): use \(prefix)HOST[:PORT]", code: .badRequest) }
        var rest = String(url.dropFirst(prefix.count))
        if rest.hasSuffix("/") { rest.removeLast() }
        try self.init(hostPort: rest, defaultPort: ReplicaNet.defaultPort, what: "receiver URL \(url)")
    }

    /// Parses `HOST:PORT` (the port may be left out when `defaultPort` is given).
    public init(hostPort text: String, defaultPort: Int?, what: String) throws {
        let bad = ReplicaError("bad \(what): use HOST[:PORT], an IPv6 address in brackets", code: .badRequest)
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad }
                portText = after.dropFirst()
            }
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { throw bad }
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw bad }
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
            guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) else { throw bad }
        }
        guard !host.isEmpty, host.count <= 253 else { throw bad }
        let port: Int
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) || (p == 0 && defaultPort == nil) else { throw bad }
            port = p
        } else {
            guard let defaultPort else { throw bad }
            port = defaultPort
        }
        self.host = String(host)
        self.port = port
    }
}
