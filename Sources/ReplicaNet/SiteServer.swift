import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ReplicaStore
import ReplicaSystem

/// `replicafs serve --disks-dir DIR` at the original site: serves that one disks directory to
/// the site's hosts (mutual TLS, certificates of the site CA) so that reprotect and failback
/// at the secondary can make its disks equal the failed-over ones: block digests, writes of
/// the differing blocks, reverse logs uploaded and replayed (routes: docs/secondary-site.md).
public final class SiteServer: Sendable {
    public let disks: SiteDisks
    public let host: String
    public let port: Int
    let tls: TLSConfiguration?

    /// `tls` nil serves plain HTTP (tests on loopback only; `serve` always passes its PKI's).
    public init(disks: SiteDisks, host: String, port: Int, tls: TLSConfiguration?) {
        self.disks = disks
        self.host = host
        self.port = port
        self.tls = tls
    }

    public convenience init(disks: SiteDisks, listen: ReceiverAddress, pki: PKIDirectory) throws {
        self.init(disks: disks, host: listen.host, port: listen.port, tls: try pki.serverTLSConfiguration())
    }

    /// Serves until SIGTERM/SIGINT (with `signals`) or the task is cancelled.
    public func run(signals: Bool = false, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        let router = Router(context: ReceiverContext.self)
        routes(router, pool)
        try await ReceiverServer.runApplication(router: router, host: host, port: port, tls: tls, label: "replicafs.site",
                                                signals: signals, onListening: onListening)
    }

    /// Adds `method /v1/site/path`: the body (up to `limit` bytes) is read, then `work` runs on
    /// the pool with the decoded path parameters and query. Errors answer like the receiver's.
    func route(_ router: Router<ReceiverContext>, _ pool: NIOThreadPool, _ method: HTTPRequest.Method, _ path: String, limit: Int = 0,
               _ work: @escaping @Sendable (SiteDisks, ReceiverServer.Call) throws -> ReceiverServer.Reply) {
        let disks = self.disks
        router.on(RouterPath(stringLiteral: ReceiverAPI.prefix + "/site" + path), method: method) { request, context -> Response in
            var request = request
            do {
                var parameters: [String: String] = [:]
                for (key, value) in context.parameters { parameters[String(key)] = String(value).removingPercentEncoding ?? String(value) }
                var query: [String: String] = [:]
                for (key, value) in request.uri.queryParameters { query[String(key)] = String(value).removingPercentEncoding ?? String(value) }
                let body = limit > 0 ? try await request.collectBody(upTo: limit) : ByteBuffer()
                disks.stats.request(bodyBytes: body.readableBytes)
                let call = ReceiverServer.Call(vm: "", parameters: parameters, query: query, data: body)
                return try await pool.runIfActive {
                    do {
                        return try work(disks, call)
                    } catch {
                        DaemonLog.logger.error("site: refused \(method) \(path): \(error)")
                        throw error
                    }
                }.response
            } catch {
                return ReceiverServer.errorResponse(error)
            }
        }
    }

    /// A name from the path: decoded, then checked by `SiteDisks` (one entry of the directory).
    static func name(_ c: ReceiverServer.Call, _ key: String) throws -> String {
        guard let value = c.parameters[key] else { throw ReplicaError("missing \(key)", code: .badRequest) }
        return value
    }

    func routes(_ router: Router<ReceiverContext>, _ pool: NIOThreadPool) {
        let chunk = ReceiverAPI.maxChunkBytes
        route(router, pool, .get, "/disks/:disk") { d, c in try .encode(ReceiverAPI.Offset(offset: try d.size(try Self.name(c, "disk")))) }
        route(router, pool, .get, "/disks/:disk/digests") { d, c in
            let (size, digests) = try d.digests(try Self.name(c, "disk"), blockSize: try ReceiverServer.blockSize(c))
            return .bytes(digests, size: size)
        }
        route(router, pool, .post, "/disks/:disk/size") { d, c in try d.setSize(try Self.name(c, "disk"), try c.int("size")); return .empty }
        route(router, pool, .put, "/disks/:disk/data", limit: chunk) { d, c in
            try c.data.withUnsafeReadableBytes { try d.write(try Self.name(c, "disk"), offset: try c.int("offset"), bytes: $0) }
            return .empty
        }
        route(router, pool, .post, "/disks/:disk/sync") { d, c in try d.sync(try Self.name(c, "disk")); return .empty }
        route(router, pool, .get, "/logs/:name") { d, c in try .encode(ReceiverAPI.Offset(offset: try d.logSize(try Self.name(c, "name")))) }
        route(router, pool, .put, "/logs/:name", limit: chunk) { d, c in
            try .encode(ReceiverAPI.Offset(offset: try c.data.withUnsafeReadableBytes {
                try d.uploadLog(try Self.name(c, "name"), offset: try c.int("offset"), bytes: $0)
            }))
        }
        route(router, pool, .post, "/disks/:disk/apply", limit: ReceiverAPI.maxJSONBytes) { d, c in
            try .encode(ReceiverAPI.Offset(offset: try d.apply(try Self.name(c, "disk"), logs: try c.decode([String].self))))
        }
        route(router, pool, .get, "/stats") { d, _ in try .encode(d.stats.snapshot) }
        route(router, pool, .delete, "/disks/:disk/source-logs") { d, c in try d.removeSourceLogs(try Self.name(c, "disk")); return .empty }
    }
}
