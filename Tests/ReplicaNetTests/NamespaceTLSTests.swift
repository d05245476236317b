import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ReplicaSystem
import ReplicaTestSupport
import Testing
@testable import ReplicaNet

/// Two hosts on one machine (network namespaces joined by a veth pair): a TLS server in A, a
/// client in B, with site certificates for their addresses. Proves the test helper and what
/// the network tests build on: the handshake crosses the link, a cut link is a recoverable
/// error (not a refusal), the link comes back, and shaping on the link is measurable.
/// Run in a test process of their own (Tools/test.sh sets REPLICAFS_NETNS_TESTS=1 for it): after
/// these tests a thread of the test process is still in a namespace, which breaks later loopback
/// tests in the same process (cause not yet found).
@Suite(.serialized, .timeLimit(.minutes(3)),
       .enabled(if: ProcessInfo.processInfo.environment["REPLICAFS_NETNS_TESTS"] == "1",
                "set REPLICAFS_NETNS_TESTS=1: these tests leave a thread in a namespace, run them in a process of their own"))
struct NamespaceTLSTests {
    /// A receiver in namespace A, a client whose only event loop lives in namespace B.
    final class TwoHosts: Sendable {
        let net: NetworkNamespaces
        let root: String
        let server: TLSTestServer
        let group: MultiThreadedEventLoopGroup
        let client: HTTPClient

        init() async throws {
            if let reason = NetworkNamespaces.unavailableReason { throw NamespaceError(reason) }
            let net = try NetworkNamespaces()
            self.net = net
            root = "/tmp/net-tls-ns-\(net.prefix)"
            do {
                let a = try PKIDirectory.initialize(name: net.addressA, at: root + "/a")
                try a.issue(host: net.addressB, to: root + "/b")
                let serverTLS = try a.serverTLSConfiguration()
                let host = net.addressA
                server = try net.onThread(in: net.a) { try TLSTestServer.bindBlocking(tls: serverTLS, host: host) }
                group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                try await group.next().submit { try net.enter(net.b) }.get()
                var config = HTTPClient.Configuration()
                config.tlsConfiguration = try PKIDirectory(path: root + "/b").clientTLSConfiguration()
                config.timeout.connect = .seconds(1)
                config.connectionPool.retryConnectionEstablishment = false
                client = HTTPClient(eventLoopGroup: group, configuration: config)
            } catch {
                try? FileSystem.removeTree(root)
                net.cleanup()
                throw error
            }
        }

        func get(_ path: String, deadline: TimeAmount = .seconds(5), port: Int? = nil) async throws -> ByteBuffer {
            let response = try await client.execute(HTTPClientRequest(url: "https://\(net.addressA):\(port ?? server.port)\(path)"), timeout: deadline)
            return try await response.body.collect(upTo: 64 << 20)
        }

        /// The median time of `count` small requests on the kept-alive connection: one round trip
        /// each (to the server's port, or to `port`: a proxy in front of it).
        func medianRoundTrip(_ count: Int = 7, port: Int? = nil) async throws -> Double {
            var times: [Double] = []
            for _ in 0..<count {
                let start = ContinuousClock.now
                _ = try await get("/", port: port)
                let elapsed = (ContinuousClock.now - start).components
                times.append(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
            }
            return times.sorted()[count / 2]
        }

        func close() async {
            try? await client.shutdown()
            // Threads go back before they end: a thread left in a namespace must never be reused.
            try? await group.next().submit { [net] in try net.leave() }.get()
            try? await group.shutdownGracefully()
            await server.stop()
            try? FileSystem.removeTree(root)
            net.cleanup()
        }
    }

    /// Runs `body` with two hosts, removed afterwards even when `body` throws.
    static func withTwoHosts(_ body: (TwoHosts) async throws -> Void) async throws {
        let hosts = try await TwoHosts()
        do {
            try await body(hosts)
        } catch {
            await hosts.close()
            throw error
        }
        await hosts.close()
    }

    @Test func handshakeCrossesTheLinkAndACutLinkIsRecoverable() async throws {
        try await Self.withTwoHosts { hosts in
            let answer = String(buffer: try await hosts.get("/peer"))
            #expect(answer == "peer=\(hosts.net.addressB) from=\(hosts.net.addressB)")

            try hosts.net.link(up: false)
            do {
                _ = try await hosts.get("/peer", deadline: .seconds(2))
                Issue.record("a request crossed a cut link")
            } catch {
                #expect(TLSFailure.classify(error) == nil, "a cut link read as a TLS refusal: \(error)")
                let mapped = TLSFailure.connectionError(error, peer: hosts.net.addressA)
                #expect(mapped.kind == .recoverable, "\(mapped)")
                #expect(mapped.description.hasPrefix("connection to \(hosts.net.addressA) failed"))
            }

            try hosts.net.link(up: true)
            // The link is back: a new connection (the cut one is gone) gets through again.
            var answered = false
            for _ in 0..<20 where !answered {
                answered = (try? await hosts.get("/peer", deadline: .seconds(2))) != nil
                if !answered { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(answered, "no answer after the link came back")
        }
    }

    @Test func shapedLinkIsMeasurable() async throws {
        try await Self.withTwoHosts { hosts in
            // 2 MB through a 16 Mbit/s bucket: about 1 s, against a few ms unshaped.
            let size = 2_000_000
            let start = ContinuousClock.now
            #expect(try await hosts.get("/bytes/\(size)").readableBytes == size)
            let unshaped = ContinuousClock.now - start
            try hosts.net.rate("16mbit")
            let shapedStart = ContinuousClock.now
            #expect(try await hosts.get("/bytes/\(size)").readableBytes == size)
            let shaped = ContinuousClock.now - shapedStart
            print("2 MB over the veth pair: \(unshaped) unshaped, \(shaped) at 16 Mbit/s")
            #expect(shaped > .milliseconds(850) && shaped < .milliseconds(1600), "\(shaped)")
            #expect(unshaped < .milliseconds(500), "\(unshaped)")
        }
    }

    /// 5 ms each way adds 10 ms to the round trip: with netem on both ends of the link where the
    /// kernel has it, otherwise through Tools/delay-proxy.py in front of the server (in A, on A's
    /// address, so the certificate still names what the client dials). Never skipped.
    @Test func netemDelayIsMeasurable() async throws {
        try await Self.withTwoHosts { hosts in
            var before = try await hosts.medianRoundTrip()
            let after: Double
            let how: String
            if NetworkNamespaces.netemAvailable {
                try hosts.net.netem(["delay", "5ms"])
                after = try await hosts.medianRoundTrip()
                how = "netem delay 5ms on both ends"
            } else {
                let proxy = try DelayProxy(hosts.net, in: hosts.net.a, listenHost: hosts.net.addressA,
                                           to: "\(hosts.net.addressA):\(hosts.server.port)", delayMs: 5)
                defer { proxy.stop() }
                // Direct and proxied requests interleaved, the fastest of each: on a loaded machine
                // the scheduler's delays swamp a median, never the lower bound of a round trip.
                _ = try await hosts.get("/", port: proxy.port)  // connect and handshake once
                var direct: [Double] = [before], proxied: [Double] = []
                for _ in 0..<9 {
                    direct.append(try await hosts.medianRoundTrip(1))
                    proxied.append(try await hosts.medianRoundTrip(1, port: proxy.port))
                }
                before = direct.min()!
                after = proxied.min()!
                how = "delay-proxy.py 5 ms each way (no netem here; fastest of 9 interleaved)"
            }
            print("round trip \(Int(before * 1000)) ms, with \(how) \(Int(after * 1000)) ms")
            #expect(after - before > 0.009 && after - before < 0.040, "before \(before) s, after \(after) s")
        }
    }
}
