import Foundation
import Testing
import ReplicaLog
import ReplicaStore
import ReplicaSystem

/// Issue 16, findings 3, 4, 5, 11 and 12 on real mounts and the real command: a deleted active
/// log, an image changed beside the mount, absurd durations and times, crafted logs with valid
/// checksums, a plan nested 200,000 deep. No point is ever made from a broken chain, no command
/// or daemon traps, and every refusal is one line with a non-zero exit that leaves data alone.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct IntegrityTests {
    struct Point: Decodable { var id: Int }

    func protect(_ site: Site, _ vm: String, extra: String) {
        Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk d.img --target '\(site.root)/store' \(extra)")
    }

    func waitProtected(_ site: Site, _ vm: String) {
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; exit 1")
    }

    func snapshot(_ vm: String) throws -> Int {
        try JSONDecoder().decode(Point.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm) --wait --json").utf8)).id
    }

    func points(_ site: Site, _ vm: String) throws -> [Int] {
        let out = Shell.must("\"$RFS\" points \(vm) --target '\(site.root)/store' --json")
        return try JSONDecoder().decode([Point].self, from: Data(out.utf8)).map(\.id)
    }

    func exportSHA(_ site: Site, _ vm: String, point: Int) -> String {
        let out = "\(site.root)/export-\(point)"
        Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(site.root)/store' --point \(point) --disk d.img --to '\(out)'")
        defer { Shell.run("rm -f '\(out)'") }
        return Shell.sha256(out)
    }

    /// A resync window that stays closed for the whole test (it opens in two hours).
    func closedWindow() -> String { Shell.must("echo $(date -d '+2 hours' +%H:%M)-$(date -d '+3 hours' +%H:%M)") }

    // MARK: finding 3

    @Test("a deleted active log makes no point: the VM resyncs and every listed point exports what it should",
          .timeLimit(.minutes(4)))
    func deletedActiveLogMakesNoWrongPoint() throws {
        let site = Site("integ-deleted-log")
        defer { site.cleanup() }
        let vm = "dl\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=32 status=none")
        site.mount()
        protect(site, vm, extra: "--copy-frequency 1h --resync-window always")
        waitProtected(site, vm)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=4 seek=2 conv=notrunc,fsync status=none")
        let good = try snapshot(vm)
        #expect(exportSHA(site, vm, point: good) == Shell.sha256(site.mnt + "/d.img"))
        // Acknowledged writes, then the active log deleted from outside, then more writes.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=4 seek=10 conv=notrunc,fsync status=none")
        let active = try #require(site.logs(of: "d.img").last)
        Shell.must("rm -f '\(active)'")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=4 seek=20 conv=notrunc,fsync status=none")
        let source = Shell.sha256(site.mnt + "/d.img")
        let snap = Shell.run("\"$RFS\" snapshot \(vm) --wait --json")
        #expect(!snap.ok && snap.stderr.contains("was deleted") && snap.stderr.contains("resync"), "snapshot: \(snap.stdout) \(snap.stderr)")
        // The resync (window always) runs by itself and makes the next point.
        Shell.must("for i in $(seq 1 300); do \"$RFS\" points \(vm) --target '\(site.root)/store' --json | grep -q '\"id\" : \(good + 1)' && exit 0; sleep 0.1; done; exit 1")
        #expect(site.daemonLog().contains("resync required: the active log d.img.") || site.daemonLog().contains("resync (the active log"),
                "daemon log: \(site.daemonLog())")
        // Every point after the good one holds all the acknowledged writes.
        for point in try points(site, vm) where point > good {
            #expect(exportSHA(site, vm, point: point) == source, "point \(point) misses acknowledged writes")
        }
        let next = try snapshot(vm)
        #expect(exportSHA(site, vm, point: next) == source)
        Shell.must("\"$RFS\" verify \(vm) --target '\(site.root)/store' --disks-dir '\(site.disks)'")
        site.unmount()
    }

    // MARK: finding 5

    @Test("an image truncated or written beside the mount is detected at the next cut: resync required, then a point equal to the image",
          .timeLimit(.minutes(4)))
    func imageChangedBesideTheMountIsDetected() throws {
        let site = Site("integ-outside")
        defer { site.cleanup() }
        let vm = "ob\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=32 status=none")
        site.mount()
        protect(site, vm, extra: "--copy-frequency 1h --resync-window \(closedWindow())")
        waitProtected(site, vm)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=2 seek=1 conv=notrunc,fsync status=none")
        _ = try snapshot(vm)

        for (what, change) in [("truncate", "truncate -s 24M '\(site.disks)/d.img'"),
                               ("dd beside the mount", "sleep 0.05; dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=1 seek=5 conv=notrunc status=none")] {
            let before = try points(site, vm)
            Shell.must(change)
            let snap = Shell.run("\"$RFS\" snapshot \(vm) --wait")
            #expect(!snap.ok && snap.stderr.contains("changed outside the mount"), "\(what): snapshot: \(snap.stderr)")
            #expect(try points(site, vm) == before, "\(what): a point was made from the changed image")
            let status = Shell.run("\"$RFS\" status '\(site.mnt)'")
            #expect(status.status == 1 && status.stdout.contains("VM \(vm): resync required")
                    && status.stdout.contains("changed outside the mount"), "\(what): status: \(status.stdout)")
            let image = Shell.sha256(site.disks + "/d.img")
            let out = Shell.must("\"$RFS\" resync \(vm) --now --json")
            struct Outcome: Decodable { var point: Point? }
            let point = try #require(try JSONDecoder().decode(Outcome.self, from: Data(out.utf8)).point, "\(what): \(out)")
            #expect(exportSHA(site, vm, point: point.id) == image, "\(what): the point after the resync differs from the image")
            // The chain is whole again: ordinary points follow.
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=64k count=4 seek=3 conv=notrunc,fsync status=none")
            let next = try snapshot(vm)
            #expect(exportSHA(site, vm, point: next) == Shell.sha256(site.disks + "/d.img"), "\(what): next point")
        }
        site.unmount()
    }

    @Test("a change beside the mount just before a clean unmount is not saved as logged: the next mount requires a resync",
          .timeLimit(.minutes(4)))
    func changeBeforeUnmountIsNotFingerprinted() throws {
        let site = Site("integ-unmount")
        defer { site.cleanup() }
        let vm = "ou\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=16 status=none")
        site.mount()
        protect(site, vm, extra: "--copy-frequency 1h --resync-window \(closedWindow())")
        waitProtected(site, vm)
        _ = try snapshot(vm)
        Shell.must("sleep 0.05; dd if=/dev/urandom of='\(site.disks)/d.img' bs=4k count=3 seek=100 conv=notrunc status=none")
        site.unmount()
        site.mount()
        let status = Shell.run("for i in $(seq 1 50); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): resync required' && break; sleep 0.1; done; \"$RFS\" status '\(site.mnt)'")
        #expect(status.stdout.contains("VM \(vm): resync required"), "status: \(status.stdout)")
        let out = Shell.must("\"$RFS\" resync \(vm) --now --json")
        struct Outcome: Decodable { var point: Point? }
        let point = try #require(try JSONDecoder().decode(Outcome.self, from: Data(out.utf8)).point)
        #expect(exportSHA(site, vm, point: point.id) == Shell.sha256(site.disks + "/d.img"))
        site.unmount()
    }

    // MARK: finding 4

    @Test("durations and times out of range are refused with one line and nothing saved", .timeLimit(.minutes(2)))
    func absurdDurationsAreRefused() throws {
        let site = Site("integ-durations")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 1M '\(site.disks)/d.img'")
        for option in ["--retention 1e11", "--retention inf", "--copy-frequency inf", "--copy-frequency nan",
                       "--copy-frequency=-5m", "--retention 99999999999999999999d", "--rpo 1e300",
                       "--app-consistent-every=-1h", "--initial 9999-12-31T23:59:59Z"] {
            let r = Shell.run("\"$RFS\" protect v1 --disks-dir '\(site.disks)' --disk d.img --target '\(site.root)/store' \(option)")
            let lines = r.stderr.split(separator: "\n")
            #expect(r.status == 1 && lines.count == 1, "\(option): exit \(r.status), stderr: \(r.stderr)")
            #expect(Shell.run("find '\(site.root)/store' '\(site.disks)/.replicafs' -name '*.json' 2>/dev/null").stdout.isEmpty,
                    "\(option) left files behind")
        }
    }

    @Test("a huge retention written into the policy file by hand does not crash the daemon, at prune or at remount",
          .timeLimit(.minutes(3)))
    func hugeStoredRetentionDoesNotCrash() throws {
        let site = Site("integ-retention")
        defer { site.cleanup() }
        let vm = "hr\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=8 status=none")
        site.mount()
        protect(site, vm, extra: "--copy-frequency 1h")
        waitProtected(site, vm)
        let policy = "\(site.disks)/.replicafs/vms/\(vm).json"
        Shell.must("sed -i 's/\"retention\" : [0-9.e+]*/\"retention\" : 1e11/; s/\"copyFrequency\" : [0-9.e+]*/\"copyFrequency\" : 1e300/' '\(policy)' && grep -q '1e11' '\(policy)'")
        for round in 0..<2 {
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=64k count=4 seek=\(round * 10) conv=notrunc,fsync status=none")
            let a = try snapshot(vm)
            let b = try snapshot(vm)
            #expect(b > a)
            #expect(exportSHA(site, vm, point: b) == Shell.sha256(site.mnt + "/d.img"))
            #expect(site.daemonPID() != nil, "the daemon died")
            site.unmount()
            site.mount()
        }
        site.unmount()
    }

    // MARK: finding 11

    /// A valid sealed first log (one write) and a second whose only record is `bad`.
    func writeChain(_ dir: String, bad: (RecordType, UInt64, UInt64, UInt64, [UInt8]), secondFirstLSN: UInt64 = 3) throws -> [String] {
        let chain = [UInt8](repeating: 9, count: 16)
        var first = LogHeader(imageName: "d.img", chainID: chain, sequence: 1, firstLSN: 1, createdNanos: 1, imageSize: 1 << 20).encode()
        let data = [UInt8](repeating: 0xab, count: 4096)
        first += RecordHeader(type: .write, lsn: 1, offset: 0, extent: 4096, dataLength: 4096, dataCRC: Checksum.crc32c(data)).encode() + data
        let seal = Seal(reason: .rotation, cutID: 1, recordCount: 1, dataBytes: 4096, timeNanos: 2).encode()
        first += RecordHeader(type: .seal, lsn: 2, offset: 0, extent: 0, dataLength: UInt32(seal.count), dataCRC: Checksum.crc32c(seal)).encode() + seal
        var second = LogHeader(imageName: "d.img", chainID: chain, sequence: 2, firstLSN: secondFirstLSN, createdNanos: 3, imageSize: 1 << 20).encode()
        let (type, lsn, offset, extent, payload) = bad
        second += RecordHeader(type: type, lsn: lsn, offset: offset, extent: extent, dataLength: UInt32(payload.count),
                               dataCRC: Checksum.crc32c(payload)).encode() + payload
        let paths = [dir + "/d.img.000001.hrl", dir + "/d.img.000002.hrl"]
        try Data(first).write(to: URL(fileURLWithPath: paths[0]))
        try Data(second).write(to: URL(fileURLWithPath: paths[1]))
        return paths
    }

    @Test("crafted logs with valid checksums: log show and log apply refuse with one line, the image unchanged; mount refuses cleanly",
          .timeLimit(.minutes(3)))
    func craftedLogsAreRefused() throws {
        let site = Site("integ-crafted")
        defer { site.cleanup() }
        let cases: [(String, (RecordType, UInt64, UInt64, UInt64, [UInt8]), UInt64)] = [
            ("write offset near 2^64", (.write, 3, UInt64.max - 7, 16, [UInt8](repeating: 1, count: 16)), 3),
            ("zero range of 2^64-1 bytes", (.zero, 3, 4096, UInt64.max, []), 3),
            ("set-size 2^64-1", (.setSize, 3, UInt64.max, 0, []), 3),
            ("LSN 2^64-1", (.write, UInt64.max, 0, 4, [1, 2, 3, 4]), UInt64.max),
        ]
        let logsDir = site.root + "/logs"
        Shell.must("mkdir -p '\(logsDir)' && dd if=/dev/urandom of='\(site.root)/target.img' bs=1M count=1 status=none")
        let targetSHA = Shell.sha256(site.root + "/target.img")
        for (name, bad, firstLSN) in cases {
            Shell.must("rm -f '\(logsDir)'/*")
            let paths = try writeChain(logsDir, bad: bad, secondFirstLSN: firstLSN)
            let show = Shell.run("\"$RFS\" log show '\(paths[1])'")
            #expect(show.status == 1 && show.stderr.split(separator: "\n").count == 1, "\(name): log show exit \(show.status): \(show.stderr)")
            let apply = Shell.run("\"$RFS\" log apply '\(paths[0])' '\(paths[1])' --to '\(site.root)/target.img'")
            #expect(apply.status == 1 && apply.stderr.split(separator: "\n").count == 1, "\(name): log apply exit \(apply.status): \(apply.stderr)")
            #expect(Shell.sha256(site.root + "/target.img") == targetSHA, "\(name): log apply wrote to the image")
            // A disks dir holding the crafted chain: the mount refuses it, nothing crashes.
            Shell.must("rm -rf '\(site.disks)' && mkdir -p '\(site.disks)' && truncate -s 1M '\(site.disks)/d.img' && cp '\(paths[0])' '\(paths[1])' '\(site.disks)/'")
            let mount = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
            #expect(mount.status == 1 && mount.stderr.contains("corrupt") && !mount.stderr.contains("died"), "\(name): mount exit \(mount.status): \(mount.stderr)")
            #expect(!Shell.run("grep -q ' \(site.mnt) ' /proc/mounts").ok, "\(name): mounted anyway")
            if mount.ok { site.unmount() }
        }
    }

    // MARK: finding 12

    @Test("failover to a far time and a plan nested 200,000 deep are refused with one line, not a crash", .timeLimit(.minutes(2)))
    func farTimesAndDeepPlansAreRefused() throws {
        let site = Site("integ-far")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 1M '\(site.disks)/d.img'")
        try DirectoryStore(root: site.root + "/store").create(vm: "v1", seeds: [("d.img", site.disks + "/d.img")])
        for time in ["9999-12-31T23:59:59Z", "2263-01-01T00:00:00Z"] {
            let r = Shell.run("\"$RFS\" failover v1 --target '\(site.root)/store' --point \(time) --mount '\(site.root)/fo' --test")
            #expect(r.status == 1 && r.stderr.contains("out of range") && r.stderr.split(separator: "\n").count == 1,
                    "\(time): exit \(r.status): \(r.stderr)")
        }
        Shell.must("{ printf 'name: p\\ngroups: '; head -c 200000 /dev/zero | tr '\\0' '['; echo; } > '\(site.root)/deep.yaml' && [ $(tr -cd '[' < '\(site.root)/deep.yaml' | wc -c) -eq 200000 ]")
        let plan = Shell.run("\"$RFS\" plan failover '\(site.root)/deep.yaml'")
        #expect(plan.status == 1 && plan.stderr.contains("nested deeper") && plan.stderr.split(separator: "\n").count == 1,
                "plan: exit \(plan.status): \(plan.stderr.prefix(300))")
    }
}
