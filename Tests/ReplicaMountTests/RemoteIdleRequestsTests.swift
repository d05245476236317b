import Foundation
import Testing

/// An idle VM protected continuously to a receiver: the replicator ticks every 100 ms, and
/// each tick used to ask the receiver twice (failed over? catalog) for every remote VM, 20
/// requests a second doing nothing. It now asks at most once a second while the answers stay
/// the same, and a write still ships at the next tick.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RemoteIdleRequestsTests {
    @Test("an idle continuously protected VM asks its receiver at most a few times a second; a write still ships")
    func idleVMAsksTheReceiverRarely() throws {
        let site = Site("idle-remote")
        let receiver = RemoteReplicationTests.Receiver(site)
        defer { receiver.stop(); site.cleanup() }
        receiver.start()
        Shell.must("truncate -s 8M '\(site.disks)/i.img'")
        site.mount()
        Shell.must("\"$RFS\" protect i --disks-dir '\(site.disks)' --disk i.img --target \(receiver.url) --pki '\(receiver.pki)' --copy-frequency continuous")
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM i: protected' && exit 0; sleep 0.1; done; exit 1")
        struct Stats: Decodable { var requests: Int64 }
        func requests() throws -> Int64 {
            let out = Shell.must("curl -sf --cacert '\(receiver.pki)/ca.pem' --cert '\(receiver.pki)/cert.pem' --key '\(receiver.pki)/key.pem' https://localhost:\(receiver.port)/v1/stats")
            return try JSONDecoder().decode(Stats.self, from: Data(out.utf8)).requests
        }
        let before = try requests()
        Thread.sleep(forTimeInterval: 4)
        let idle = try requests() - before - 1 // the first stats request counts too
        print("requests to the receiver in 4 s of an idle VM: \(idle)")
        // Two questions a second at most (8), some slack for a slow tick; before: 2 per 100 ms tick (80).
        #expect(idle <= 16, "\(idle) requests in 4 s")

        struct VM: Decodable { var logBytesShipped: Int64 }
        struct M: Decodable { var vms: [VM] }
        func shipped() throws -> Int64 {
            try #require(try JSONDecoder().decode([M].self, from: Data(Shell.statusJSON(site.mnt).utf8)).first?.vms.first).logBytesShipped
        }
        let shippedBefore = try shipped()
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/i.img' bs=64k count=16 conv=notrunc,fsync status=none")
        var now = shippedBefore
        for _ in 0..<100 where now < shippedBefore + (1 << 20) {
            Thread.sleep(forTimeInterval: 0.1)
            now = try shipped()
        }
        #expect(now >= shippedBefore + (1 << 20), "shipped \(now - shippedBefore) bytes of the 1 MiB written")
        site.unmount()
    }
}
