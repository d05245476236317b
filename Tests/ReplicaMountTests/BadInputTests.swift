import Foundation
import Testing

/// Bad input: one clear line on stderr, a non-zero exit, and no data touched.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BadInputTests {
    /// Runs a replicafs command that must fail with `message` on one stderr line.
    func refuses(_ args: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = Shell.run("\"$RFS\" \(args)")
        #expect(!r.ok, "expected failure: replicafs \(args)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.contains(message),
                "replicafs \(args): stderr was \(r.stderr)", sourceLocation: sourceLocation)
    }

    /// Fingerprint of a disks dir: names and sha256 of every file but the lock.
    func fingerprint(_ dir: String) -> String {
        Shell.must("cd '\(dir)' && find . -type f ! -name .replicafs.lock -print0 | sort -z | xargs -0 -r sha256sum")
    }

    @Test("mount refuses a missing disks-dir, a missing, non-empty or mounted mountpoint, no /dev/fuse")
    func mountArguments() {
        let site = Site("bad-mount")
        defer { site.cleanup() }
        Shell.must("truncate -s 4M '\(site.disks)/vm.img'")
        let before = fingerprint(site.disks)
        refuses("mount '\(site.root)/nope' '\(site.mnt)'", "disks directory \(site.root)/nope does not exist")
        refuses("mount '\(site.disks)' '\(site.root)/nomnt'", "mountpoint \(site.root)/nomnt does not exist")
        Shell.must("mkdir -p '\(site.root)/full' && touch '\(site.root)/full/x'")
        refuses("mount '\(site.disks)' '\(site.root)/full'", "is not empty")
        Shell.must("mkdir -p '\(site.root)/tmpfs' && mount -t tmpfs none '\(site.root)/tmpfs'")
        site.extraMounts.append(site.root + "/tmpfs")
        refuses("mount '\(site.disks)' '\(site.root)/tmpfs'", "is already mounted (tmpfs")
        // No /dev/fuse: a private mount namespace with an empty /dev.
        let r = Shell.run("unshare -m bash -c 'mount -t tmpfs none /dev && exec \"$RFS\" mount \(site.disks) \(site.mnt)'")
        #expect(!r.ok && r.stderr.contains("no /dev/fuse"), "\(r.stderr)")
        #expect(fingerprint(site.disks) == before)

        site.mount()
        refuses("mount '\(site.disks)' '\(site.mnt)'", "is already mounted by replicafs")
        Shell.must("mkdir -p '\(site.root)/mnt2'")
        refuses("mount '\(site.disks)' '\(site.root)/mnt2'", "already served by another replicafs daemon")
        site.unmount()
        refuses("unmount '\(site.mnt)'", "is not mounted")
        refuses("rotate '\(site.mnt)'", "is not served by a running replicafs daemon")
    }

    @Test("mount refuses an unreadable image and corrupt or foreign logs without touching data")
    func mountRefusesBadImagesAndLogs() {
        let site = Site("bad-logs")
        defer { site.cleanup() }
        Shell.must("dd if=/dev/urandom of='\(site.disks)/vm.img' bs=1M count=4 status=none")
        refuses("mount '\(site.root)/empty' '\(site.mnt)'", "does not exist")

        // A dangling symlink is not an image (docs/security.md): skipped, so alone it leaves nothing to serve.
        Shell.must("mkdir '\(site.root)/only-link' && ln -s /nonexistent/disk.img '\(site.root)/only-link/gone.img'")
        refuses("mount '\(site.root)/only-link' '\(site.mnt)'", "no disk images in \(site.root)/only-link (skipped: gone.img (a dangling symlink)")
        var before: String

        // A file that is not an HRL log at all.
        Shell.must("head -c 4096 /dev/urandom > '\(site.disks)/vm.img.000001.hrl'")
        before = fingerprint(site.disks)
        refuses("mount '\(site.disks)' '\(site.mnt)'", "vm.img.000001.hrl: not an HRL change log (bad magic)")
        #expect(fingerprint(site.disks) == before)
        Shell.must("rm '\(site.disks)/vm.img.000001.hrl'")

        // Real logs of another image, renamed into this image's chain: foreign.
        Shell.must("mkdir -p '\(site.root)/other' && truncate -s 1M '\(site.root)/other/x.img'")
        Shell.must("\"$RFS\" mount '\(site.root)/other' '\(site.mnt)' && echo hi > /dev/null && \"$RFS\" unmount '\(site.mnt)'")
        Shell.must("cp '\(site.root)/other/x.img.000001.hrl' '\(site.disks)/vm.img.000001.hrl'")
        before = fingerprint(site.disks)
        refuses("mount '\(site.disks)' '\(site.mnt)'", "foreign log: it belongs to image 'x.img', not 'vm.img'")
        #expect(fingerprint(site.disks) == before)
        Shell.must("rm '\(site.disks)/vm.img.000001.hrl'")

        // A bit flipped inside a record that valid records follow: damage, not a torn tail.
        site.mount()
        Shell.must("for i in 1 2 3; do dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=4k count=1 seek=$i conv=notrunc,fsync status=none; done")
        let pid = site.daemonPID()!
        Shell.must("kill -9 \(pid); sleep 0.3; umount -l '\(site.mnt)'")
        let log = site.logs(of: "vm.img").last!
        // First record's data starts at 512 + 48; flip a byte in it.
        Shell.must("printf '\\xff' | dd of='\(log)' bs=1 seek=600 conv=notrunc status=none")
        before = fingerprint(site.disks)
        refuses("mount '\(site.disks)' '\(site.mnt)'", "corrupt record at byte 512")
        #expect(fingerprint(site.disks) == before)
    }

    @Test("log apply refuses gaps, foreign logs, corrupt records and torn tails before writing")
    func applyRefuses() {
        let site = Site("bad-apply")
        defer { site.cleanup() }
        Shell.must("truncate -s 8M '\(site.disks)/vm.img' && cp '\(site.disks)/vm.img' '\(site.root)/target.img'")
        site.mount()
        for _ in 0..<3 {
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=4k count=8 seek=$((RANDOM % 2000)) conv=notrunc,fsync status=none")
            Shell.must("\"$RFS\" rotate '\(site.mnt)'")
        }
        site.unmount()
        let logs = site.logs(of: "vm.img")
        #expect(logs.count == 4)
        let target = site.root + "/target.img"
        let untouched = Shell.sha256(target)
        refuses("log apply '\(logs[0])' '\(logs[2])' --to '\(target)'", "gap in log sequence: 1 is followed by 3")
        // A foreign log: another image's.
        Shell.must("mkdir -p '\(site.root)/o' '\(site.root)/om' && truncate -s 1M '\(site.root)/o/w.img'")
        Shell.must("\"$RFS\" mount '\(site.root)/o' '\(site.root)/om' && \"$RFS\" unmount '\(site.root)/om'")
        refuses("log apply '\(logs[0])' '\(site.root)/o/w.img.000001.hrl' --to '\(target)'", "foreign log")
        // A corrupt record in the middle of a copy of log 2.
        let bad = site.root + "/vm.img.000002.hrl"
        Shell.must("cp '\(logs[1])' '\(bad)' && chmod u+w '\(bad)' && printf '\\x00\\x00' | dd of='\(bad)' bs=1 seek=700 conv=notrunc status=none")
        refuses("log apply '\(logs[0])' '\(bad)' '\(logs[2])' --to '\(target)'", "corrupt record at byte 512")
        // A torn tail: the last log cut mid-record.
        let torn = site.root + "/torn.hrl"
        Shell.must("head -c 700 '\(logs[0])' > '\(torn)'")
        refuses("log apply '\(torn)' --to '\(target)'", "torn tail at byte 512")
        // Not a log at all; a missing target.
        refuses("log apply '\(target)' --to '\(target)'", "not an HRL change log")
        refuses("log apply '\(logs[0])' --to '\(site.root)/missing.img'", "target image \(site.root)/missing.img does not exist")
        #expect(Shell.sha256(target) == untouched)
        // In any order, the full chain applies.
        Shell.must("\"$RFS\" log apply '\(logs[3])' '\(logs[1])' '\(logs[0])' '\(logs[2])' --to '\(target)'")
        #expect(Shell.sha256(target) == Shell.sha256(site.disks + "/vm.img"))
    }
}
