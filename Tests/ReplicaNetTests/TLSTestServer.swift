import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ReplicaNet
import Synchronization

/// A tiny real HTTP/1.1 server on a loopback (or namespace) socket, with TLS from a
/// `PKIDirectory` or without: it answers `/bytes/N` with N bytes and every other request with
/// `peer=<name of the client's certificate> from=<client address>`, and keeps the errors its connections caught (the server's side of a refusal).
final class TLSTestServer: Sendable {
    let channel: any Channel
    let port: Int
    private let sink: ErrorSink

    /// Binds `host`:0 (a free port). `tls` nil serves plain HTTP.
    convenience init(tls: TLSConfiguration?, host: String = "127.0.0.1") async throws {
        let errors = ErrorSink()
        self.init(channel: try await Self.bootstrap(tls: tls, errors: errors).bind(host: host, port: 0).get(), errors: errors)
    }

    /// The same, blocking: for a thread that entered a network namespace, so the listening
    /// socket is created there (NIO creates it on the calling thread).
    static func bindBlocking(tls: TLSConfiguration?, host: String) throws -> TLSTestServer {
        let errors = ErrorSink()
        return TLSTestServer(channel: try bootstrap(tls: tls, errors: errors).bind(host: host, port: 0).wait(), errors: errors)
    }

    private init(channel: any Channel, errors: ErrorSink) {
        self.channel = channel
        self.sink = errors
        port = channel.localAddress?.port ?? 0
    }

    private static func bootstrap(tls: TLSConfiguration?, errors: ErrorSink) throws -> ServerBootstrap {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        return ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(PeerNameResponder(errors: errors))
                }
            }
    }

    /// What the server's connections caught so far, as text.
    var errors: [String] { sink.caught.withLock { $0 } }

    func stop() async {
        try? await channel.close()
    }
}

/// The errors the server's connections caught, shared with their handlers.
final class ErrorSink: Sendable {
    let caught = Mutex<[String]>([])
}

private final class PeerNameResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let errors: ErrorSink

    init(errors: ErrorSink) { self.errors = errors }

    var uri = ""

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri = head.uri
        case .body: break
        case .end: respond(context: context)
        }
    }

    private func respond(context: ChannelHandlerContext) {
        var body: ByteBuffer
        if uri.hasPrefix("/bytes/"), let count = Int(uri.dropFirst("/bytes/".count)) {
            body = context.channel.allocator.buffer(capacity: count)
            body.writeRepeatingByte(0x5a, count: count)
        } else {
            let certificate = try? context.channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
            let name = certificate.flatMap { PKIDirectory.peerName(of: $0) } ?? "none"
            let from = context.channel.remoteAddress?.ipAddress ?? "?"
            body = context.channel.allocator.buffer(string: uri == "/peer" ? "peer=\(name) from=\(from)" : "peer=\(name)")
        }
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "\(body.readableBytes)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.caught.withLock { $0.append(String(describing: error)) }
        context.close(promise: nil)
    }
}
