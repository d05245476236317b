import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import ReplicaSystem
import X509

extension PKIDirectory {
    /// Why this site would refuse `certificate`: not signed by the site CA, expired or not yet
    /// valid; nil when it passes those checks. Explains a failed verification, which
    /// BoringSSL reports without its reason; it never replaces the verification itself.
    public func check(_ certificate: NIOSSLCertificate, at date: Date = Date()) throws -> TLSFailure.Cause? {
        let ca = try Self.readCertificate(file(Self.caFile))
        guard let parsed = try? Certificate(derEncoded: try certificate.toDERBytes()) else { return .badCertificate }
        if parsed.issuer != ca.subject || !ca.publicKey.isValidSignature(parsed.signature, for: parsed) { return .unknownCA }
        if parsed.notValidAfter < date { return .expired }
        if parsed.notValidBefore > date { return .notYetValid }
        return nil
    }
}

extension TLSFailure {
    /// After this side refused a receiver's certificate (`.verificationFailed`): connects once
    /// more to `host`:`port` without verifying, reads the certificate the receiver presents and
    /// says exactly what is wrong with it (another CA, expired, not yet valid, another host
    /// name). nil when it cannot tell (the receiver is gone, or its certificate looks fine).
    /// Blocks the calling thread; never call it on an event loop.
    public static func diagnose(host: String, port: Int, pki: PKIDirectory, timeout: TimeAmount = .seconds(5)) -> Cause? {
        guard let certificate = try? peerCertificate(host: host, port: port, pki: pki, timeout: timeout) else { return nil }
        if let cause = try? pki.check(certificate) { return cause }
        guard let parsed = try? Certificate(derEncoded: try certificate.toDERBytes()),
              let names = try? parsed.extensions.subjectAlternativeNames
        else { return nil }
        let address = PKIDirectory.ipAddressBytes(host)
        let matches = names.contains { name in
            switch name {
            case .dnsName(let dns): return address == nil && dns.lowercased() == host.lowercased()
            case .ipAddress(let bytes): return address.map { Array(bytes.bytes) == $0 } ?? false
            default: return false
            }
        }
        return matches ? nil : .hostNameMismatch
    }

    /// The certificate `host` presents, read over a TLS handshake that verifies nothing.
    private static func peerCertificate(host: String, port: Int, pki: PKIDirectory, timeout: TimeAmount) throws -> NIOSSLCertificate? {
        var config = try pki.clientTLSConfiguration()
        config.certificateVerification = .none
        let context = try NIOSSLContext(configuration: config)
        let group = MultiThreadedEventLoopGroup.singleton
        let handshake = group.next().makePromise(of: NIOSSLCertificate?.self)
        let sni = PKIDirectory.ipAddressBytes(host) == nil ? host : nil
        let channel: any Channel
        do {
            channel = try ClientBootstrap(group: handshake.futureResult.eventLoop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: sni))
                        try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(promise: handshake))
                    }
                }
                .connect(host: host, port: port).wait()
        } catch {
            handshake.fail(error)  // a promise is always completed (NIO traps on a leaked one)
            throw error
        }
        defer { channel.close(promise: nil) }
        let scheduled = channel.eventLoop.scheduleTask(in: timeout) { handshake.fail(ChannelError.connectTimeout(timeout)) }
        defer { scheduled.cancel() }
        return try handshake.futureResult.wait()
    }

    /// Completes its promise with the peer's certificate when the TLS handshake completes (or
    /// fails). The certificate is read right there, on the event loop: a receiver that refuses
    /// this host's certificate closes the connection a moment later, and a read after that
    /// finds no handler (the race made the diagnosis fail now and then).
    private final class HandshakeWaiter: ChannelInboundHandler {
        typealias InboundIn = NIOAny
        let promise: EventLoopPromise<NIOSSLCertificate?>

        init(promise: EventLoopPromise<NIOSSLCertificate?>) { self.promise = promise }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted = event as? TLSUserEvent {
                promise.succeed(try? context.pipeline.syncOperations.nioSSL_peerCertificate())
            }
            context.fireUserInboundEventTriggered(event)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.eof)
            context.fireChannelInactive()
        }
    }
}
