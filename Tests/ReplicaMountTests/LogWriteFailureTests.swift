import Foundation
import Testing

/// What a full disk does to the write path (docs/protected-mount.md, "Write path failures"): a
/// log append that fails fails the write and is cut back off the log (nothing to resync); a
/// write whose record is logged but whose image write then fails, with later records logged
/// behind it, is the "failed log write" resync trigger. Real full filesystems: the disks-dir is
/// a small tmpfs filled up by a hidden file (hidden files are not served).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LogWriteFailureTests {
    struct Shown: Decodable { var tail: String; var records: Int }

    /// A small tmpfs as `site.disks` holding `d.img`: `allocated` MiB of random data, then a
    /// hole up to `size` MiB.
    func fullDiskSite(_ name: String, size: Int, allocated: Int, env: String = "") -> (Site, VMProbe) {
        let site = Site(name)
        Shell.must("mount -t tmpfs -o size=16M rfs-\(name) '\(site.disks)'")
        site.extraMounts.append(site.disks)
        Shell.must("truncate -s \(size)M '\(site.disks)/d.img' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=\(allocated) conv=notrunc status=none")
        Shell.must("\(env) REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        return (site, VMProbe(site: site))
    }

    /// Fills the tmpfs to its last page (the file is hidden, so the mount does not serve it).
    func fill(_ site: Site) {
        Shell.run("dd if=/dev/zero of='\(site.disks)/.filler' bs=64k status=none 2>/dev/null")
        let avail = Shell.must("df --output=avail -B1 '\(site.disks)' | tail -1").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(avail == "0", "the tmpfs is not full: \(avail) bytes free")
    }

    @Test("a log append on a full disk fails the write with ENOSPC and is cut back off the log: the image is unchanged, the log scans clean, no resync is required, and once space is back writes and points go on")
    func fullLogFailsTheWriteCleanly() throws {
        let (site, probe) = fullDiskSite("logfull", size: 4, allocated: 4)
        defer { site.cleanup() }
        probe.protect("lf", disk: "d.img", "--copy-frequency 1h --resync-window always")
        #expect(probe.waitFor("lf", seconds: 20) { $0.lastPoint != nil }?.health == "normal")
        let before = Shell.sha256(site.disks + "/d.img")
        let log = try #require(site.logs(of: "d.img").last)
        let records0 = try JSONDecoder().decode(Shown.self, from: Data(Shell.must("\"$RFS\" log show '\(log)' --json").utf8)).records
        fill(site)
        // An overwrite of allocated bytes: the image needs no space, the log's record does.
        let w = Shell.run("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=4 seek=100 conv=notrunc,fsync status=none")
        #expect(!w.ok && w.stderr.contains("No space left on device"), "the write did not fail with ENOSPC: \(w.status) \(w.stderr)")
        #expect(Shell.sha256(site.disks + "/d.img") == before, "the image took a write its log refused")
        #expect(Shell.sha256(site.mnt + "/d.img") == before, "the mount shows a write the image does not hold")
        let shown = try JSONDecoder().decode(Shown.self, from: Data(Shell.must("\"$RFS\" log show '\(log)' --json").utf8))
        #expect(shown.tail == "clean" && shown.records == records0, "the log kept a refused record: \(shown)")
        let s = try #require(probe.state("lf"))
        #expect(s.state == "protected" && !s.healthReasons.contains { $0.contains("resync") }, "\(s)")

        Shell.must("rm -f '\(site.disks)/.filler'")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=4 seek=100 conv=notrunc,fsync status=none")
        let source = Shell.sha256(site.mnt + "/d.img")
        #expect(source != before)
        let point = try probe.snapshot("lf")
        #expect(probe.exported("lf", point: String(point.id), disk: "d.img") == source)
        site.unmount()
    }

    @Test("a write logged whose image write then fails on a full disk, with a later write logged behind it, requires a resync with the reason in status --json; once space is back the automatic resync makes a point equal to the source")
    func failedLogWriteTriggersResync() throws {
        try withDivergedSite("logfail", vm: "lw") { site, probe, before in
            let required = probe.waitFor("lw", seconds: 20) { $0.healthReasons.contains { $0.contains("a log write failed on d.img") } }
            #expect(required?.healthReasons.contains { $0.contains("a log write failed on d.img") && $0.contains("logged but failed on the image") } == true,
                    "no failed-log-write resync: \(String(describing: required))\n\(site.daemonLog().suffix(2000))")
            #expect(required?.state == "resync required" || required?.state == "resynchronizing", "\(String(describing: required))")
            #expect(Shell.run("\"$RFS\" status '\(site.mnt)'").status >= 1)
            // A's bytes are not on the image (its pages were dropped from the kernel's cache); B's are.
            #expect(Shell.run("cmp -s '\(site.mnt)/d.img' '\(site.disks)/d.img'").ok, "the mount shows bytes the image does not hold")
            #expect(Shell.run("dd if='\(site.disks)/d.img' bs=4k skip=1536 count=1 status=none | cmp -s -n 4096 - /dev/zero").ok,
                    "write A reached the image")

            // Space comes back: the resync runs on its own and its point equals the source.
            Shell.must("rm -f '\(site.disks)/.filler'")
            let source = Shell.sha256(site.mnt + "/d.img")
            let done = probe.waitFor("lw", seconds: 45) {
                $0.state == "protected" && ($0.lastPoint ?? 0) > (before.map(\.id).max() ?? 0) && !$0.healthReasons.contains { $0.contains("resync") }
            }
            // Health may stay Warning for a while: the cycle that failed while the disk was full counts as missed.
            #expect(done?.state == "protected", "\(String(describing: done))\n\(site.daemonLog().suffix(2000))")
            // One resync, not one every retry interval (10 s): its cut cleared the divergence.
            usleep(11_000_000)
            #expect(site.daemonLog().components(separatedBy: "lw: resync (").count - 1 == 1,
                    "not exactly one resync: \(site.daemonLog().suffix(2000))")
            #expect(probe.state("lw")?.state == "protected")
            #expect(probe.exported("lw", point: "latest", disk: "d.img") == source)
            site.unmount()
        }
    }

    @Test("a failed log write whose resync requirement cannot be saved (the disk still full) survives a clean unmount: the log is left unsealed, and the next mount requires the resync and its point equals the source")
    func failedLogWriteSurvivesAnUnmount() throws {
        try withDivergedSite("logkeep", vm: "lk") { site, probe, before in
            let required = probe.waitFor("lk", seconds: 20) { $0.healthReasons.contains { $0.contains("a log write failed on d.img") } }
            #expect(required != nil, "no failed-log-write resync: \(site.daemonLog().suffix(2000))")
            // The disk is full: the requirement lives only in the daemon's memory.
            let requirementFile = site.disks + "/.replicafs/resync/lk.json"
            #expect(!FileManager.default.fileExists(atPath: requirementFile), "the requirement was saved on a full disk: the case this test is for did not arise")

            Shell.run("\"$RFS\" unmount '\(site.mnt)'")
            #expect(!Shell.run("grep -q ' \(site.mnt) ' /proc/mounts").ok, "the unmount left the mount")
            #expect(site.daemonLog().contains("d.img: log left unsealed at shutdown"), "\(site.daemonLog().suffix(2000))")

            // Space comes back; the next mount recovers the log and requires the resync by itself.
            Shell.must("rm -f '\(site.disks)/.filler'")
            Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
            let source = Shell.sha256(site.mnt + "/d.img")
            let done = probe.waitFor("lk", seconds: 45) {
                $0.state == "protected" && ($0.lastPoint ?? 0) > (before.map(\.id).max() ?? 0) && !$0.healthReasons.contains { $0.contains("resync") }
            }
            #expect(done?.state == "protected", "\(String(describing: done))\n\(site.daemonLog().suffix(2000))")
            #expect(site.daemonLog().contains("lk: resync ("), "no resync after the remount: \(site.daemonLog().suffix(2000))")
            #expect(probe.exported("lk", point: "latest", disk: "d.img") == source)
            #expect(Shell.sha256(site.disks + "/d.img") == source, "the image differs from what the mount serves")
            site.unmount()
        }
    }

    /// A full-disk site whose VM `vm` has a failed log write (`divergeOnFullDisk`), given to
    /// `body` with the points made before; the site and the fault files go afterwards.
    func withDivergedSite(_ name: String, vm: String, _ body: (Site, VMProbe, [VMProbe.Point]) throws -> Void) throws {
        let faults = "/var/tmp/rfs-test-\(name)-faults-\(getpid())"
        Shell.must("rm -rf '\(faults)' && mkdir -p '\(faults)'")
        defer { Shell.run("rm -rf '\(faults)'") }
        let (site, probe) = fullDiskSite(name, size: 8, allocated: 4,
                                         env: "REPLICAFS_FAULT=journal-before-image-write REPLICAFS_FAULT_DIR='\(faults)'")
        defer {
            Shell.run("rm -f '\(faults)/journal-before-image-write.arm'")
            site.cleanup()
        }
        try body(site, probe, try divergeOnFullDisk(site, probe, vm: vm, faults: faults))
    }

    /// Brings `site`'s VM `vm` to a failed log write on a full disk: write A's record is logged,
    /// held at a fault point until write B is logged behind it, then A's image write fails for
    /// real (it lands in the image's hole and the filesystem is full); B overwrites allocated
    /// bytes and succeeds. Returns the points made before. The disk is left full.
    func divergeOnFullDisk(_ site: Site, _ probe: VMProbe, vm: String, faults: String) throws -> [VMProbe.Point] {
        probe.protect(vm, disk: "d.img", "--copy-frequency 1h --resync-window always")
        #expect(probe.waitFor(vm, seconds: 20) { $0.lastPoint != nil }?.health == "normal")
        let before = try probe.points(vm)
        // One logged write first: the new log preallocates room for the records to come.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=1 seek=8 conv=notrunc,fsync status=none")
        let log = try #require(site.logs(of: "d.img").last)
        fill(site)

        // A and B are written through a shared mapping and sent with sync_file_range: neither
        // holds the file's inode lock while the daemon holds its write (a write(2) or fsync
        // would, and B could not follow A).
        func mmapWrite(_ page: Int, _ tag: String) {
            let py = "import mmap,os,ctypes; fd=os.open('\(site.mnt)/d.img', os.O_RDWR); m=mmap.mmap(fd, 4096, offset=\(page)*4096); "
                + "m[:] = os.urandom(4096); ctypes.CDLL(None, use_errno=True).sync_file_range(fd, ctypes.c_longlong(\(page)*4096), ctypes.c_longlong(4096), 2)"
            Shell.run("( timeout 120 python3 -c \"\(py)\"; echo $? > '\(faults)/\(tag).rc' ) >/dev/null 2>&1 &")
        }
        Shell.must("touch '\(faults)/journal-before-image-write.arm'")
        let sizeBeforeA = try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int ?? 0
        mmapWrite(1536, "a") // in the hole: needs space the filesystem no longer has
        #expect(waitFile(faults + "/journal-before-image-write.reached", seconds: 30), "write A never reached the fault point")
        let sizeAfterA = try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int ?? 0
        #expect(sizeAfterA > sizeBeforeA, "write A is not in the log")
        mmapWrite(16, "b") // over allocated bytes: needs no space
        let deadline = Date().addingTimeInterval(30)
        while (try? FileManager.default.attributesOfItem(atPath: log)[.size] as? Int ?? 0) ?? 0 <= sizeAfterA && Date() < deadline { usleep(20_000) }
        #expect((try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int ?? 0) > sizeAfterA, "write B was never logged")
        Shell.must("rm -f '\(faults)/journal-before-image-write.arm'")

        return before
    }

    func waitFile(_ path: String, seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(20_000) }
        return FileManager.default.fileExists(atPath: path)
    }
}
