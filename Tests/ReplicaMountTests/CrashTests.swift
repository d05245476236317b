import Foundation
import Testing

/// kill -9 of the daemon during writes: the next mount cleans up the dead mount, cuts the
/// torn tail, and the logs still reproduce every fsync-acknowledged write.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CrashTests {
    @Test("kill -9 mid-write: stale mount cleaned, torn tail cut, every acknowledged write replays")
    func killDuringWrites() throws {
        let site = Site("crash")
        defer { site.cleanup() }
        let img = site.disks + "/vm1.img"
        Shell.must("truncate -s 64M '\(img)'")
        let base = site.root + "/base.img"
        Shell.must("cp --sparse=always '\(img)' '\(base)'")
        let pattern = site.root + "/pattern"
        Shell.must("dd if=/dev/urandom of='\(pattern)' bs=64k count=1024 status=none")
        site.mount()
        let pid = try #require(site.daemonPID())
        // The writer acknowledges block i only after dd's fsync through the mount returned.
        let acked = site.root + "/acked"
        let writer = """
        for i in $(seq 0 1023); do \
          dd if='\(pattern)' of='\(site.mnt)/vm1.img' bs=64k skip=$i seek=$i count=1 conv=notrunc,fsync status=none || exit 0; \
          echo $i >> '\(acked)'; \
          dd if=/dev/urandom of='\(site.mnt)/vm1.img' bs=4k count=4 seek=$((16384 + RANDOM % 100)) conv=notrunc status=none 2>/dev/null || exit 0; \
        done
        """
        Shell.must("( \(writer) ) > /dev/null 2>&1 & echo $! > '\(site.root)/writer.pid'")
        Shell.must("for i in $(seq 1 100); do [ -s '\(acked)' ] && [ $(wc -l < '\(acked)') -ge 40 ] && break; sleep 0.1; done")
        Shell.must("kill -9 \(pid)")
        Shell.must("w=$(cat '\(site.root)/writer.pid'); while kill -0 $w 2>/dev/null; do sleep 0.1; done")
        let ackedBlocks = Shell.must("cat '\(acked)'").split(separator: "\n").compactMap { Int($0) }
        #expect(ackedBlocks.count >= 40)

        // Simulate a write torn by the crash: half a record at the end of the active log.
        let active = try #require(site.logs(of: "vm1.img").last)
        Shell.must("printf 'HRLR\\x01\\x00\\x00\\x00garbage-half-record' >> '\(active)'")
        let before = Shell.must("\"$RFS\" log show '\(active)' --json")
        #expect(before.contains("\"tail\" : \"torn\""))

        // The mountpoint still holds the dead mount; the next mount must clean it up.
        #expect(Shell.run("grep -q ' \(site.mnt) fuse.replicafs' /proc/mounts").ok)
        let remount = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(remount.ok, "remount failed: \(remount.stderr)")
        #expect(remount.stderr.contains("stale mount"))
        let repaired = Shell.must("\"$RFS\" log show '\(active)'")
        #expect(repaired.contains("unclean-shutdown") && repaired.contains("torn tail cut"))
        #expect(repaired.contains("sealed (recovered-after-crash)") && repaired.contains("tail:       clean"))
        #expect(Shell.must("\"$RFS\" status '\(site.mnt)'").contains("recovered after an unclean shutdown"))
        site.unmount()

        let replayed = site.replay("vm1.img", onto: base)
        for block in ackedBlocks {
            let a = Shell.must("dd if='\(replayed)' bs=64k skip=\(block) count=1 status=none | sha256sum")
            let b = Shell.must("dd if='\(pattern)' bs=64k skip=\(block) count=1 status=none | sha256sum")
            #expect(a == b, "acknowledged block \(block) is missing from the replayed logs")
        }
        // Writes reach the log before the image, so the log holds everything the image does:
        // replaying the logs onto the image itself gives the same bytes as onto the base. (A
        // write logged but not yet on the image when the daemon died is in both replays; the
        // image alone may lack it, which is why the image is not compared directly.)
        let fromBase = Shell.sha256(replayed)
        #expect(Shell.sha256(site.replay("vm1.img", onto: img)) == fromBase)
    }
}
