import Foundation
import ReplicaTestSupport
import Testing

/// Replication across a link with a 10 ms round trip between the two hosts of `TwoSiteTests`:
/// `Tools/delay-proxy.py` (5 ms each way) in b in front of the receiver, the sender in a
/// dialing the proxy on b's address (the receiver's certificate names that address, so TLS
/// passes through it unchanged). The proxy stands in for netem, which this kernel lacks.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct TwoSiteLatencyTests {
    @Test("replication through a 10 ms round trip (delay proxy, 5 ms each way, in front of the receiver): the point equals the source by sha256, and the delay is really on the path")
    func replicatesThroughDelay() throws {
        try TwoSiteTests.withHosts("lagproxy") { h in
            h.serve()
            let proxy = try DelayProxy(h.net, in: h.net.b, listenHost: h.net.addressB, to: "\(h.net.addressB):8084", delayMs: 5)
            defer { proxy.stop() }
            let target = "replicafs://\(h.net.addressB):\(proxy.port)"

            // The TLS handshake from a (one round trip plus crypto) through the proxy against
            // straight to the receiver, interleaved, the fastest of each: 10 ms more, of which at
            // least half must show through the noise of a loaded machine (0 ms gives about 1 ms).
            let tls = "--cacert '\(h.pkiA)/ca.pem' --cert '\(h.pkiA)/cert.pem' --key '\(h.pkiA)/key.pem'"
            var direct = Double.infinity, proxied = Double.infinity
            for _ in 0..<7 {
                for port in [8084, proxy.port] {
                    let out = h.must("a", "curl -sf -o /dev/null -w '%{time_appconnect}' \(tls) https://\(h.net.addressB):\(port)/v1/stats")
                    let seconds = try #require(Double(out.trimmingCharacters(in: .whitespacesAndNewlines)), "\(out)")
                    if port == 8084 { direct = min(direct, seconds) } else { proxied = min(proxied, seconds) }
                }
            }
            print("TLS handshake from a: \(Int(direct * 1000)) ms straight to serve, \(Int(proxied * 1000)) ms through the proxy")
            #expect(proxied - direct >= 0.005 && proxied - direct < 0.040, "TLS handshake direct \(direct) s, through the proxy \(proxied) s")

            Shell.must("truncate -s 16M '\(h.disksA)/l.img' && dd if=/dev/urandom of='\(h.disksA)/l.img' bs=1M count=2 conv=notrunc status=none")
            h.mount("a", h.disksA, h.mntA)
            h.must("a", "\"$RFS\" protect l --disks-dir '\(h.disksA)' --disk l.img --target \(target) --pki '\(h.pkiA)' --copy-frequency 1h")
            Shell.must(h.env("a") + "for i in $(seq 1 600); do \"$RFS\" status '\(h.mntA)' | grep -q 'VM l: protected' && exit 0; sleep 0.1; done; \"$RFS\" status '\(h.mntA)'; exit 1")
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/l.img' bs=64k count=64 seek=64 conv=notrunc,fsync status=none")
            let sum = Shell.sha256(h.mntA + "/l.img")
            let point = try h.snapshot("l")
            #expect(h.exported("l", point: String(point), disk: "l.img") == sum)
            // Everything crossed the proxy: the receiver took at least the 4 MiB of logs.
            let stats = try h.stats()
            #expect(stats.bodyBytes >= 4 << 20, "receiver took \(stats.bodyBytes) bytes")
        }
    }
}
