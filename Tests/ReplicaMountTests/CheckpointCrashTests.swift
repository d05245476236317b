import Foundation
import Testing

/// fsync through the mount makes only the change log durable; the image follows at
/// checkpoints, and mounting after a crash replays the log since the last checkpoint onto the
/// image (docs/protected-mount.md, "Durability"). These tests crash the daemon with
/// fsync-acknowledged writes before and after a checkpoint and across a rotation held
/// before its checkpoint, then check the image and the next recovery point hold every one.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CheckpointCrashTests {
    struct Point: Decodable { var id: Int }

    @Test("kill -9: every fsync-acknowledged write is on the image after remount and in the next recovery point")
    func killAfterAcknowledgedWrites() throws {
        try crash(powerLoss: false)
    }

    @Test("power loss (image back at its last checkpoint): the remount replays the log; every acknowledged write is on the image and in the next point")
    func powerLossAfterAcknowledgedWrites() throws {
        try crash(powerLoss: true)
    }

    /// The checkpoint LSN recorded for `image`, or nil.
    func checkpointLSN(_ site: Site, _ image: String) -> UInt64? {
        let text = (try? String(contentsOfFile: site.disks + "/.replicafs/checkpoints/" + image, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").first { $0.hasPrefix("lsn ") }.flatMap { UInt64($0.dropFirst(4)) }
    }

    func crash(powerLoss: Bool) throws {
        let site = Site(powerLoss ? "ckpt-power" : "ckpt-kill")
        defer { site.cleanup() }
        let vm = "ck\(getpid())\(powerLoss ? "p" : "k")"
        let faults = site.root + "/faults", copies = site.root + "/copies", img = site.disks + "/d.img"
        Shell.must("mkdir -p '\(site.root)/store' '\(faults)' '\(copies)' && dd if=/dev/urandom of='\(img)' bs=1M count=32 status=none")
        // Checkpoints by volume only (every 1 MiB of log), each leaving a copy of the image as
        // it was at the checkpoint (the test hook); the rotation can be held before its checkpoint.
        let env = "REPLICAFS_CHECKPOINT_SECONDS=3600 REPLICAFS_CHECKPOINT_MIB=1 REPLICAFS_TEST_CHECKPOINT_COPY='\(copies)' REPLICAFS_FAULT=rotate-before-checkpoint REPLICAFS_FAULT_DIR='\(faults)'"
        Shell.must("\(env) \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk d.img --target '\(site.root)/store' --copy-frequency 1h --resync-window always")
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; exit 1")
        let firstPoint = try JSONDecoder().decode(Point.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm) --wait --json").utf8)).id

        // 64 KiB patterns in slots 0..<28, each acknowledged by dd's fdatasync through the
        // mount; unsynced 4 KiB writes in between (above the slots) are never acknowledged (the
        // next fdatasync writes them back, so they are logged one slot later).
        let pattern = site.root + "/pattern"
        Shell.must("dd if=/dev/urandom of='\(pattern)' bs=64k count=28 status=none")
        func write(_ slots: Range<Int>) {
            for i in slots {
                Shell.must("dd if='\(pattern)' of='\(site.mnt)/d.img' bs=64k skip=\(i) seek=\(i) count=1 conv=notrunc,fdatasync status=none")
                Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=1 seek=\(1024 + i * 3) conv=notrunc status=none")
            }
        }
        // 16 slots: about the 16th takes the log past 1 MiB since the last checkpoint, so a
        // volume checkpoint follows, in the middle of the log.
        let before = checkpointLSN(site, "d.img")
        write(0..<16)
        Shell.must("for i in $(seq 1 100); do [ \"$(sed -n 's/^lsn //p' '\(site.disks)/.replicafs/checkpoints/d.img')\" != '\(before ?? 0)' ] && exit 0; sleep 0.1; done; exit 1")
        let midLog = try #require(checkpointLSN(site, "d.img"))
        #expect(midLog > before ?? 0, "no checkpoint after 1 MiB of log")
        // 6 more slots, then a rotation held after its cut, before its checkpoint; 6 more
        // slots go to the new log. Nothing of these 12 (816 KiB of log, below the next
        // volume checkpoint) is on a checkpointed image.
        write(16..<22)
        let pid = try #require(site.daemonPID())
        Shell.must("touch '\(faults)/rotate-before-checkpoint.arm'")
        Shell.run("( timeout 120 \"$RFS\" rotate '\(site.mnt)'; echo $? > '\(faults)/rotate.rc' ) >/dev/null 2>&1 &")
        let reached = faults + "/rotate-before-checkpoint.reached"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: reached) && Date() < deadline { usleep(20_000) }
        try #require(FileManager.default.fileExists(atPath: reached), "the rotation never reached its checkpoint")
        write(22..<28)
        #expect(checkpointLSN(site, "d.img") == midLog, "a checkpoint ran after the one under test")
        Shell.must("kill -9 \(pid); while kill -0 \(pid) 2>/dev/null; do sleep 0.05; done")
        Shell.run("rm -f '\(faults)/rotate-before-checkpoint.arm'")
        #expect(site.logs(of: "d.img").count >= 2, "the held rotation left no sealed log")
        if powerLoss {
            // The image's writes since the last checkpoint are lost, as in a power cut: the
            // image goes back to the copy the checkpoint hook took at that checkpoint's LSN.
            // (Its log was synced by each acknowledged fdatasync and is kept whole.)
            Shell.must("cp '\(copies)/d.img' '\(img)'")
            let lost = (0..<28).filter { i in
                Shell.must("dd if='\(img)' bs=64k skip=\(i) count=1 status=none | sha256sum") != Shell.must("dd if='\(pattern)' bs=64k skip=\(i) count=1 status=none | sha256sum")
            }
            // The checkpoint came after slot 14 or 15 (the kernel may split a slot's write back
            // into several records): everything later is off the image now.
            #expect(Set(16..<28).isSubset(of: lost) && lost.allSatisfy { $0 >= 15 }, "the simulated power loss should lose the slots after the checkpoint: lost \(lost)")
        }

        // The remount replays the log since the checkpoint onto the image, then resyncs
        // (an unclean shutdown) and commits a point.
        site.mount()
        #expect(site.daemonLog().contains("d.img: replayed "), "no replay logged")
        for i in 0..<28 {
            let got = Shell.must("dd if='\(site.mnt)/d.img' bs=64k skip=\(i) count=1 status=none | sha256sum")
            #expect(got == Shell.must("dd if='\(pattern)' bs=64k skip=\(i) count=1 status=none | sha256sum"), "acknowledged slot \(i) is not on the image after the remount")
        }
        // Idle now: the next point must equal the image.
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; exit 1")
        let point = try JSONDecoder().decode(Point.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm) --wait --json").utf8)).id
        #expect(point > firstPoint)
        let out = site.root + "/export.img"
        Shell.must("\"$RFS\" export \(vm) --target '\(site.root)/store' --point \(point) --disk d.img --to '\(out)'")
        #expect(Shell.sha256(out) == Shell.sha256(site.mnt + "/d.img"), "the point after the crash differs from the image")
        site.unmount()
        // The clean shutdown left a checkpoint at the end of the chain: nothing to replay.
        Shell.must("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        let replays = site.daemonLog().components(separatedBy: "d.img: replayed ").count - 1
        #expect(replays == 1, "a clean remount replayed again (\(replays) replays logged)")
        site.unmount()
    }
}
