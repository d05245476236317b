import Foundation
import Testing

/// Resyncs the README says start by themselves or clear a Critical VM: pending logs over
/// `--resync-threshold` while the store cannot take them, and `resync --now` after a
/// non-recoverable error. REPLICAFS_TIME_SCALE=0.01 runs the retry back-off in seconds.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ResyncTriggerTests {
    @Test("logs pending over --resync-threshold while the store is full require a resync, which runs by itself once space is back: the point equals the source and the logs are gone")
    func thresholdTriggersResync() throws {
        let site = Site("threshold")
        defer { site.cleanup() }
        let probe = VMProbe(site: site), store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && mount -t tmpfs -o size=12M rfs-threshold '\(store)'")
        site.extraMounts.append(store)
        Shell.must("truncate -s 32M '\(site.disks)/d.img' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=1 conv=notrunc status=none")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        probe.protect("th", disk: "d.img", "--copy-frequency 1h --resync-threshold 25 --resync-window always")
        #expect(probe.waitFor("th", seconds: 20) { $0.lastPoint != nil }?.health == "normal")
        let before = try probe.points("th")
        let sum0 = Shell.sha256(site.mnt + "/d.img")
        // 16 MiB of changes: over 25% of the 32 MiB disk, and more than the store has room for.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=16 seek=8 conv=notrunc,fsync status=none")
        let failed = Shell.run("\"$RFS\" snapshot th")
        #expect(!failed.ok && failed.stderr.contains("No space left on device"), "\(failed.stderr)")
        let s = probe.waitFor("th", seconds: 15) { $0.healthReasons.contains { $0.contains("resync") && $0.contains("over 25") } }
        #expect(s?.healthReasons.contains { $0.contains("logs pending for d.img, over 25") } == true,
                "no threshold resync: \(String(describing: s))\n\(site.daemonLog().suffix(2000))")
        #expect(try probe.points("th").map(\.id) == before.map(\.id), "a point was made while the store was full")

        // Space comes back: the resync runs on its own and ends with a point equal to the source.
        Shell.must("mount -o remount,size=256M '\(store)'")
        let source = Shell.sha256(site.mnt + "/d.img")
        let done = probe.waitFor("th", seconds: 30) {
            $0.state == "protected" && ($0.lastPoint ?? 0) > (before.map(\.id).max() ?? 0) && !$0.healthReasons.contains { $0.contains("resync") }
        }
        #expect(done?.state == "protected", "\(String(describing: done))")
        #expect(site.daemonLog().contains("th: resync ("), "the daemon log names no resync")
        #expect(probe.exported("th", point: "latest", disk: "d.img") == source)
        let last = try #require(before.last)
        #expect(probe.exported("th", point: String(last.id), disk: "d.img") == sum0, "the point before the resync changed")
        site.unmount()
    }

    @Test("a Critical VM (read-only store) is cleared by a resync --now that succeeds: health normal, status exit 0, the point equals the source")
    func resyncNowClearsCritical() throws {
        let site = Site("crit-resync")
        defer { site.cleanup() }
        let probe = VMProbe(site: site), store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && dd if=/dev/urandom of='\(site.disks)/c.img' bs=1M count=8 status=none")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        probe.protect("cr", disk: "c.img", "--copy-frequency 1s")
        #expect(probe.waitFor("cr", seconds: 20) { $0.lastPoint != nil }?.health == "normal")
        Shell.must("mount --bind '\(store)' '\(store)' && mount -o remount,bind,ro '\(store)'")
        site.extraMounts.append(store)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/c.img' bs=64k count=16 seek=3 conv=notrunc,fsync status=none")
        let critical = probe.waitFor("cr", seconds: 15) { $0.health == "critical" }
        #expect(critical?.health == "critical", "\(String(describing: critical))")
        #expect(Shell.run("\"$RFS\" status '\(site.mnt)'").status == 2)
        // While the cause is there, resync --now fails and the VM stays Critical.
        let refused = Shell.run("\"$RFS\" resync cr --now")
        #expect(!refused.ok && refused.stderr.split(separator: "\n").count == 1, "\(refused.stdout) \(refused.stderr)")
        #expect(probe.state("cr")?.health == "critical")

        Shell.must("umount '\(store)'")
        site.extraMounts.removeAll()
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/c.img' bs=4k count=3 seek=1000 conv=notrunc,fsync status=none")
        let source = Shell.sha256(site.mnt + "/c.img")
        struct Outcome: Decodable { struct P: Decodable { var id: Int }; var state: String; var point: P? }
        let out = try JSONDecoder().decode(Outcome.self, from: Data(Shell.must("\"$RFS\" resync cr --now --json").utf8))
        let point = try #require(out.point, "resync --now made no point")
        #expect(probe.exported("cr", point: String(point.id), disk: "c.img") == source)
        let s = probe.waitFor("cr", seconds: 10) { $0.health != "critical" && $0.lastError == nil }
        #expect(s?.health != "critical" && s?.lastError == nil, "still Critical after resync --now: \(String(describing: s))")
        #expect(!(s?.healthReasons.contains { $0.contains("replicafs resume") } ?? true), "\(String(describing: s))")
        // Replication goes on by itself afterwards (1 s cycles), no resume needed.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/c.img' bs=4k count=2 seek=77 conv=notrunc,fsync status=none")
        let later = Shell.sha256(site.mnt + "/c.img")
        let next = probe.waitFor("cr", seconds: 10) { ($0.lastPoint ?? 0) > point.id }
        #expect((next?.lastPoint ?? 0) > point.id, "no cycle after resync --now")
        #expect(probe.exported("cr", point: "latest", disk: "c.img") == later)
        site.unmount()
    }
}
