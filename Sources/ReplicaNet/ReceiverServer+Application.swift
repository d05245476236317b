import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL

extension ReceiverServer {
    /// Serves `router` over HTTP/1.1, with mutual TLS when `tls` is given, until the task is
    /// cancelled or (with `signals`) SIGTERM/SIGINT: the receiver and the original site's
    /// server (`SiteServer`) run the same way.
    static func runApplication(router: Router<ReceiverContext>, host: String, port: Int, tls: TLSConfiguration?, label: String,
                               signals: Bool, onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let server: HTTPServerBuilder = if let tls { try .tls(.http1(), tlsConfiguration: tls) } else { .http1() }
        let app = Application(router: router, server: server,
                              configuration: .init(address: .hostname(host, port: port), serverName: "replicafs"),
                              onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
                              logger: Logger(label: label))
        try await app.runService(gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [])
    }
}
