import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ReplicaSystem
import Testing
@testable import ReplicaNet

/// Mutual TLS between a real server socket and AsyncHTTPClient, with certificates made by
/// `PKIDirectory`: the site's certificates pass, every other case is refused with an error
/// that names its cause, on the client and in the server's log.
extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct TLSHandshakeTests {
    /// Site A (the receiver, 127.0.0.1) ran `certs init`; site B got its directory from `certs issue`.
    struct Sites {
        let root: String
        let a: PKIDirectory
        let b: PKIDirectory

        init() throws {
            root = "/tmp/net-tls-pki-\(UUID().uuidString.prefix(8))"
            a = try PKIDirectory.initialize(name: "127.0.0.1", at: root + "/a")
            try a.issue(host: "siteb", to: root + "/b")
            b = PKIDirectory(path: root + "/b")
        }

        func remove() { try? FileSystem.removeTree(root) }
    }

    /// GET https://127.0.0.1:port/ with `tls`; the body, or the error the client threw.
    static func get(port: Int, tls: TLSConfiguration?, scheme: String = "https") async -> Result<String, any Error> {
        var config = HTTPClient.Configuration()
        config.tlsConfiguration = tls
        config.timeout.connect = .seconds(5)
        // A refused handshake fails the request at once instead of being retried until the deadline.
        config.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: config)
        let result: Result<String, any Error>
        do {
            let response = try await client.execute(HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(port)/"), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 16)
            result = .success(String(buffer: body))
        } catch {
            result = .failure(error)
        }
        try? await client.shutdown()
        return result
    }

    /// Runs a blocking call on a thread of its own (not the cooperative pool, not an event loop).
    static func offLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    /// Runs `body` against a TLS server of site A (or `serverPKI`), stopping it and removing
    /// the certificates even when an expectation throws.
    static func withServer(serverPKI: ((Sites) throws -> PKIDirectory)? = nil,
                           _ body: (Sites, TLSTestServer) async throws -> Void) async throws {
        let sites = try Sites()
        defer { sites.remove() }
        let server = try await TLSTestServer(tls: try (serverPKI?(sites) ?? sites.a).serverTLSConfiguration())
        do {
            try await body(sites, server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// The client's error, mapped; fails the test when the request succeeded.
    static func refusal(_ result: Result<String, any Error>, peer: String = "127.0.0.1") throws -> (TLSFailure.Cause, TLSFailure.Side, ReplicaError) {
        guard case .failure(let error) = result else {
            Issue.record("the connection was accepted: \(result)")
            throw ReplicaError("accepted")
        }
        let classified = try #require(TLSFailure.classify(error), "unclassified client error: \(error)")
        let mapped = try #require(TLSFailure.replicaError(error, peer: peer))
        #expect(mapped.kind == .nonRecoverable)
        #expect(!mapped.description.contains("\n"))
        return (classified.cause, classified.side, mapped)
    }

    /// Waits (briefly) for the server to log a refusal and returns its classification.
    static func serverRefusal(_ server: TLSTestServer) async throws -> TLSFailure.Cause? {
        for _ in 0..<50 {
            for text in server.errors {
                if let found = TLSFailure.classify(text: text) { return found.cause }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("the server logged no TLS refusal: \(server.errors)")
        return nil
    }

    @Test func siteCertificatesPassBothWaysAndNameThePeer() async throws {
        try await Self.withServer { sites, server in
            let body = try await Self.get(port: server.port, tls: try sites.b.clientTLSConfiguration()).get()
            #expect(body == "peer=siteb")
            #expect(try sites.a.hostName() == "127.0.0.1")
            #expect(try sites.b.hostName() == "siteb")
            #expect(server.errors.isEmpty)
        }
    }

    @Test func clientCertificateFromAnotherCAIsRefused() async throws {
        try await Self.withServer { sites, server in
            let intruder = try PKIDirectory.initialize(name: "intruder", at: sites.root + "/x")
            // The intruder trusts site A's CA (it copied ca.pem) but its certificate is its own CA's.
            try FileSystem.remove(intruder.path + "/ca.pem")
            var ca = try FileSystem.readFile(sites.a.path + "/ca.pem")
            try ca.withUnsafeMutableBytes { try FileSystem.writeAtomically(intruder.path + "/ca.pem", UnsafeRawBufferPointer($0), mode: 0o644) }
            let (cause, side, error) = try Self.refusal(await Self.get(port: server.port, tls: try intruder.clientTLSConfiguration()))
            #expect(cause == .unknownCA && side == .peer, "\(error)")
            #expect(error.description.contains("not signed by the site CA"))
            #expect(try await Self.serverRefusal(server) == .verificationFailed)
        }
    }

    @Test func serverCertificateFromAnotherCAIsRefused() async throws {
        try await Self.withServer(serverPKI: { sites in try PKIDirectory.initialize(name: "127.0.0.1", at: sites.root + "/other") }) { sites, server in
            let (cause, side, error) = try Self.refusal(await Self.get(port: server.port, tls: try sites.b.clientTLSConfiguration()))
            #expect(cause == .verificationFailed && side == .local, "\(error)")
            #expect(try await Self.serverRefusal(server) == .unknownCA)
            // The sender can tell exactly why: it reads the receiver's certificate once more.
            let port = server.port, b = sites.b
            #expect(await Self.offLoop { TLSFailure.diagnose(host: "127.0.0.1", port: port, pki: b) } == .unknownCA)
        }
    }

    @Test func expiredServerCertificateIsRefusedAndDiagnosed() async throws {
        try await Self.withServer(serverPKI: { sites in
            try sites.a.issue(host: "127.0.0.1", to: sites.root + "/expired", validDays: 1, notValidBefore: Date() - 3 * 86_400)
            return PKIDirectory(path: sites.root + "/expired")
        }) { sites, server in
            let result = await Self.get(port: server.port, tls: try sites.b.clientTLSConfiguration())
            let (cause, side, error) = try Self.refusal(result)
            #expect(cause == .verificationFailed && side == .local, "\(error)")
            #expect(try await Self.serverRefusal(server) == .expired)
            let port = server.port, b = sites.b
            let diagnosed = await Self.offLoop { TLSFailure.diagnose(host: "127.0.0.1", port: port, pki: b) }
            #expect(diagnosed == .expired)
            let failure = try #require(result.failure)
            let refined = try #require(TLSFailure.replicaError(failure, peer: "127.0.0.1", cause: diagnosed))
            #expect(refined.description == "TLS connection with 127.0.0.1 refused: its certificate expired", "\(refined)")
        }
    }

    @Test func expiredClientCertificateIsRefused() async throws {
        try await Self.withServer { sites, server in
            try sites.a.issue(host: "siteb", to: sites.root + "/expired", validDays: 1, notValidBefore: Date() - 3 * 86_400)
            let expired = PKIDirectory(path: sites.root + "/expired")
            let (cause, side, error) = try Self.refusal(await Self.get(port: server.port, tls: try expired.clientTLSConfiguration()))
            #expect(cause == .expired && side == .peer, "\(error)")
            #expect(error.description.contains("certificate expired"))
            #expect(try await Self.serverRefusal(server) == .verificationFailed)
        }
    }

    @Test func serverCertificateForAnotherHostIsRefused() async throws {
        try await Self.withServer(serverPKI: { sites in
            try sites.a.issue(host: "10.77.0.9", to: sites.root + "/elsewhere")
            return PKIDirectory(path: sites.root + "/elsewhere")
        }) { sites, server in
            let (cause, side, error) = try Self.refusal(await Self.get(port: server.port, tls: try sites.b.clientTLSConfiguration()))
            #expect(cause == .hostNameMismatch && side == .local, "\(error)")
            #expect(error.description.contains("host name mismatch"))
            let port = server.port, b = sites.b
            #expect(await Self.offLoop { TLSFailure.diagnose(host: "127.0.0.1", port: port, pki: b) } == .hostNameMismatch)
            // The site's own receiver certificate passes the same diagnosis.
            #expect(try sites.b.check(try NIOSSLCertificate(bytes: try FileSystem.readFile(sites.a.path + "/cert.pem"), format: .pem)) == nil)
        }
    }

    @Test func clientWithoutCertificateIsRefused() async throws {
        try await Self.withServer { sites, server in
            var tls = try sites.b.clientTLSConfiguration()
            tls.certificateChain = []
            tls.privateKey = nil
            let (cause, side, error) = try Self.refusal(await Self.get(port: server.port, tls: tls))
            #expect(cause == .noPeerCertificate && side == .peer, "\(error)")
            #expect(try await Self.serverRefusal(server) == .noPeerCertificate)
        }
    }

    @Test func plainHTTPToTheTLSPortIsRefused() async throws {
        try await Self.withServer { sites, server in
            let result = await Self.get(port: server.port, tls: nil, scheme: "http")
            #expect(result.failure != nil, "plain HTTP was answered on the TLS port")
            let refused = try await Self.serverRefusal(server)
            #expect(refused == .notTLS)
        }
    }

    @Test func tlsClientToAPlainServerIsRefused() async throws {
        let sites = try Sites()
        defer { sites.remove() }
        let plain = try await TLSTestServer(tls: nil)
        let result = await Self.get(port: plain.port, tls: try sites.b.clientTLSConfiguration())
        await plain.stop()
        let (cause, _, error) = try Self.refusal(result)
        #expect(cause == .notTLS, "\(error)")
    }
}
