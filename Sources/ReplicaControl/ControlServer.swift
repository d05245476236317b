import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Answers requests on a daemon's control socket, one at a time on one thread: one JSON
/// line in, one out. What each request does is the daemon's `handler`; its errors are
/// answered as `ok: false` with their text.
public final class ControlServer: Sendable {
    public typealias Handler = @Sendable (ControlRequest) throws -> ControlResponse
    private let socket: UnixSocket
    private let handler: Handler

    public init(path: String, handler: @escaping Handler) throws {
        socket = try UnixSocket.listen(at: path)
        self.handler = handler
    }

    public func start() {
        let t = Thread { [self] in
            while true {
                guard let client = try? socket.accept() else { return }
                // One thread per client: a long snapshot or resync must not hold up status.
                Thread { [self] in
                    handle(client)
                    client.close()
                }.start()
            }
        }
        t.name = "replicafs-control"
        t.start()
    }

    /// Stops accepting: the accept loop ends when the socket is shut down.
    public func stop() {
        _ = shutdown(socket.fd, Int32(SHUT_RDWR))
        socket.close()
        _ = unlink(socket.path)
    }

    private func handle(_ client: UnixSocket) {
        var response: ControlResponse
        do {
            response = try handler(try JSONDecoder().decode(ControlRequest.self, from: try client.receiveLine()))
        } catch {
            response = ControlResponse(ok: false, error: "\(error)")
        }
        if let data = try? JSONEncoder().encode(response) { try? client.sendLine(data) }
    }
}
