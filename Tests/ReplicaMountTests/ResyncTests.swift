import Foundation
import Testing
import ReplicaTestSupport

/// Resync on real mounts: images changed behind the mount's back, a resync by hand under a
/// running writer, and kill -9 of the daemon under write load. Each ends comparing sha256 of
/// the source with the export of a recovery point, and older points with what they were.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ResyncTests {
    struct Point: Decodable { var id: Int }
    struct Report: Decodable { var bytesSent: Int64; var diskBytes: Int64; var bytesCompared: Int64; var seconds: Double }
    struct Outcome: Decodable { var state: String; var report: Report?; var point: Point? }

    func protect(_ site: Site, _ vm: String, disk: String, extra: String) {
        Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk '\(disk)' --target '\(site.root)/store' \(extra)")
    }

    func waitProtected(_ site: Site, _ vm: String) {
        Shell.must("for i in $(seq 1 200); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; exit 1")
    }

    func snapshot(_ vm: String) throws -> Int {
        try JSONDecoder().decode(Point.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm) --wait --json").utf8)).id
    }

    func exportSHA(_ site: Site, _ vm: String, point: String, disk: String) -> String {
        let out = "\(site.root)/export-\(point)-\(disk)"
        Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(site.root)/store' --point \(point) --disk \(disk) --to '\(out)'")
        defer { Shell.run("rm -f '\(out)'") }
        return Shell.sha256(out)
    }

    /// The daemon log's resync lines for `vm`: (bytes sent, disk bytes) each.
    func resyncLines(_ site: Site, _ vm: String) -> [(sent: Int64, disk: Int64)] {
        // The site's own daemon log, in ${REPLICAFS_RUN_DIR:-/run/replicafs}.
        let lines = site.daemonLog().split(separator: "\n").filter { $0.contains("replicafs: \(vm): resync (") }
        return lines.compactMap { line in
            guard let r = line.range(of: " sent ") else { return nil }
            let f = line[r.upperBound...].split(separator: " ")
            guard f.count >= 3, f[1] == "of", let sent = Int64(f[0]), let disk = Int64(f[2]) else { return nil }
            return (sent, disk)
        }
    }

    @Test("an image modified behind the mount's back is detected at the next mount and resynced; old points unchanged")
    func outsideChangeDetectedAtMount() throws {
        let site = Site("resync-outside")
        defer { site.cleanup() }
        let vm = "ro\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=128 status=none")
        site.mount()
        protect(site, vm, disk: "d.img", extra: "--copy-frequency 1h --resync-window always")
        waitProtected(site, vm)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=64k count=16 seek=100 conv=notrunc,fsync status=none")
        let old = try snapshot(vm)
        let oldSHA = exportSHA(site, vm, point: String(old), disk: "d.img")
        #expect(oldSHA == Shell.sha256(site.mnt + "/d.img"))
        // The newest point before the unmount: the copy-frequency cycle that follows the
        // initial copy at once may commit after the snapshot, so it is not always `old`.
        let points = Shell.must("\"$RFS\" points \(vm) --target '\(site.root)/store' --json")
        let newestBefore = try #require(try JSONDecoder().decode([Point].self, from: Data(points.utf8)).map(\.id).max())
        site.unmount()

        // Behind the mount's back: 3 MiB rewritten in place, size unchanged.
        Shell.must("dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=3 seek=40 conv=notrunc status=none")
        let source = Shell.sha256(site.disks + "/d.img")
        #expect(Shell.run("\"$RFS\" verify \(vm) --target '\(site.root)/store' --disks-dir '\(site.disks)'").status == 1)
        site.mount()
        // The resync, then its first consistent point, newer than any before the unmount.
        Shell.must("for i in $(seq 1 200); do p=$(\"$RFS\" status '\(site.mnt)' --json | sed -n 's/.*\"lastPoint\" : \\([0-9]*\\).*/\\1/p'); [ -n \"$p\" ] && [ \"$p\" -gt \(newestBefore) ] && exit 0; sleep 0.1; done; exit 1")
        let lines = resyncLines(site, vm)
        let sent = try #require(lines.last)
        print("outside change: resync sent \(sent.sent) of \(sent.disk) bytes (\(String(format: "%.1f", Double(sent.sent) * 100 / Double(sent.disk)))%) for 3 MiB changed")
        #expect(lines.count == 1)
        #expect(sent.sent >= 3 << 20 && sent.sent <= 4 << 20)
        // The next point equals the source; the older one is still what it was.
        let point = try snapshot(vm)
        #expect(exportSHA(site, vm, point: String(point), disk: "d.img") == source)
        #expect(exportSHA(site, vm, point: String(old), disk: "d.img") == oldSHA)
        Shell.must("\"$RFS\" verify \(vm) --target '\(site.root)/store' --disks-dir '\(site.disks)'")
        let diff = Shell.run("\"$RFS\" verify \(vm) --target '\(site.root)/store' --disks-dir '\(site.disks)' --point \(old) --json")
        #expect(diff.status == 1 && diff.stdout.contains("\"offset\" : 41943040"), "verify against the old point: \(diff.stdout)")
        site.unmount()
    }

    @Test("outside the resync window the VM waits as 'resync required' and refuses points; resync --now runs it")
    func waitsForTheWindowUnlessNow() throws {
        let site = Site("resync-window")
        defer { site.cleanup() }
        let vm = "rw\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=32 status=none")
        // A one-hour window starting two hours from now: closed for the whole test.
        let window = Shell.must("echo $(date -d '+2 hours' +%H:%M)-$(date -d '+3 hours' +%H:%M)")
        site.mount()
        protect(site, vm, disk: "d.img", extra: "--copy-frequency 1h --resync-window \(window)")
        waitProtected(site, vm)
        let old = try snapshot(vm)
        let oldSHA = exportSHA(site, vm, point: String(old), disk: "d.img")
        site.unmount()
        Shell.must("dd if=/dev/urandom of='\(site.disks)/d.img' bs=4k count=5 seek=1000 conv=notrunc status=none")
        site.mount()
        Shell.must("for i in $(seq 1 100); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): resync required' && exit 0; sleep 0.1; done; exit 1")
        // Waiting for the window is Warning (no points are made meanwhile), not a failed attempt.
        let waiting = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(waiting.status == 1 && waiting.stdout.contains("waiting for the resync window \(window)")
                && waiting.stdout.contains("health: warning\n") && waiting.stdout.contains("- resync required: "), "\(waiting.stdout)")
        #expect(Shell.must("\"$RFS\" jobs").contains("\(vm)\tresync\twaiting for the resync window"))
        let refused = Shell.run("\"$RFS\" snapshot \(vm) --wait")
        #expect(!refused.ok && refused.stderr.contains("needs a resync") && refused.stderr.contains("--now"), "\(refused.stderr)")
        // A refused snapshot is not a failed attempt either: no retry scheduled, no back-off
        // that could hold the resync past the window's opening.
        let after = Shell.run("\"$RFS\" status '\(site.mnt)' --json")
        #expect(after.status == 1 && after.stdout.contains("\"retryAttempt\" : 0") && !after.stdout.contains("nextRetryAt")
                && after.stdout.contains("\"health\" : \"warning\""), "\(after.stdout)")
        let source = Shell.sha256(site.mnt + "/d.img")
        let out = Shell.must("\"$RFS\" resync \(vm) --now --json")
        let outcome = try JSONDecoder().decode(Outcome.self, from: Data(out.utf8))
        let report = try #require(outcome.report)
        print("resync --now outside the window: sent \(report.bytesSent) of \(report.diskBytes) bytes in \(report.seconds) s")
        #expect(outcome.state == "resynchronized" && report.bytesSent == 1 << 20)
        let point = try #require(outcome.point)
        #expect(exportSHA(site, vm, point: String(point.id), disk: "d.img") == source)
        #expect(exportSHA(site, vm, point: String(old), disk: "d.img") == oldSHA)
        #expect(Shell.must("\"$RFS\" status '\(site.mnt)'").contains("VM \(vm): protected"))
        // Bad input: an unknown VM is one clear line and exit 1.
        let bad = Shell.run("\"$RFS\" resync nope-\(vm) --now")
        #expect(bad.status == 1 && bad.stderr.contains("unknown VM nope-\(vm)"))
        site.unmount()
    }

    @Test("a chain the store refuses makes the VM resync; the next snapshot is equal to the source")
    func refusedChainTriggersResync() throws {
        let site = Site("resync-chain")
        defer { site.cleanup() }
        let vm = "rc\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=32 status=none")
        site.mount()
        protect(site, vm, disk: "d.img", extra: "--copy-frequency 1h --resync-window always")
        waitProtected(site, vm)
        let old = try snapshot(vm)
        let oldSHA = exportSHA(site, vm, point: String(old), disk: "d.img")
        // The store's record of the chain no longer matches the logs (as after a lost log).
        Shell.must("python3 -c \"import json; p='\(site.root)/store/\(vm)/catalog.json'; c=json.load(open(p)); c['disks'][0]['nextLSN'] -= 1; json.dump(c, open(p, 'w'))\"")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=8 seek=3000 conv=notrunc,fsync status=none")
        let refused = Shell.run("\"$RFS\" snapshot \(vm) --wait")
        #expect(!refused.ok && refused.stderr.contains("broken log chain") && refused.stderr.contains("resync required"), "\(refused.stderr)")
        // A refused chain is a resync trigger, not Critical (the daemon may be resyncing already:
        // the window is always open).
        let meanwhile = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(meanwhile.status != 2 && !meanwhile.stdout.contains("critical") && !meanwhile.stdout.contains("resume"), "\(meanwhile.stdout)")
        // The next snapshot resyncs first (the window is always open), then cuts its point.
        let source = Shell.sha256(site.mnt + "/d.img")
        let point = try snapshot(vm)
        #expect(exportSHA(site, vm, point: String(point), disk: "d.img") == source)
        #expect(exportSHA(site, vm, point: String(old), disk: "d.img") == oldSHA)
        let sent = try #require(resyncLines(site, vm).last)
        print("refused chain: resync sent \(sent.sent) of \(sent.disk) bytes")
        #expect(sent.sent == 1 << 20)
        Shell.must("\"$RFS\" verify \(vm) --target '\(site.root)/store' --disks-dir '\(site.disks)'")
        // Resynced and replicating again: Normal (exit 0).
        #expect(Shell.must("\"$RFS\" status '\(site.mnt)'").contains("VM \(vm): protected"))
        site.unmount()
    }

    @Test("protect refuses a bad resync window or threshold; verify refuses bad input; nothing is saved")
    func badResyncInput() throws {
        let site = Site("resync-bad")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 8M '\(site.disks)/d.img'")
        for (extra, message) in [("--resync-window 25:00-06:00", "bad resync window '25:00-06:00'"),
                                 ("--resync-window sometimes", "bad resync window 'sometimes'"),
                                 ("--resync-threshold 0", "bad --resync-threshold")] {
            let r = Shell.run("\"$RFS\" protect bad --disks-dir '\(site.disks)' --disk d.img --target '\(site.root)/store' \(extra)")
            #expect(r.status == 1 && r.stderr.contains(message) && r.stderr.split(separator: "\n").count == 1, "\(extra): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: site.disks + "/.replicafs/vms/bad.json"))
        let unknown = Shell.run("\"$RFS\" verify nope --target '\(site.root)/store' --disks-dir '\(site.disks)'")
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown VM nope"), "\(unknown.stderr)")
        let noStore = Shell.run("\"$RFS\" verify nope --target '\(site.root)/missing' --disks-dir '\(site.disks)'")
        #expect(noStore.status == 1 && noStore.stderr.contains("does not exist"), "\(noStore.stderr)")
    }

    @Test("resync --now under a running writer ends with a point holding exactly the writes up to its cut")
    func manualResyncUnderWriter() throws {
        let site = Site("resync-fio")
        defer { site.cleanup() }
        let vm = "rf\(getpid())"
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=128 status=none")
        site.mount()
        protect(site, vm, disk: "d.img", extra: "--copy-frequency 1h")
        waitProtected(site, vm)
        let old = try snapshot(vm)
        let oldSHA = exportSHA(site, vm, point: String(old), disk: "d.img")
        // A stamping writer (one sequence number in every 4 KiB block, each write acknowledged
        // by fdatasync) over the first 16 MiB runs through the whole resync.
        let stamper = StampWriter(regions: [.init(path: site.mnt + "/d.img", first: 0, count: 4096)], seed: TestSeed.make(), pause: 2_000)
        stamper.start()
        defer { stamper.stop() }
        Shell.must("sleep 1.5")
        let low = stamper.acked
        let out = Shell.must("\"$RFS\" resync \(vm) --now --json")
        let high = stamper.issued
        let outcome = try JSONDecoder().decode(Outcome.self, from: Data(out.utf8))
        let report = try #require(outcome.report)
        print("resync --now under a stamping writer: sent \(report.bytesSent) of \(report.diskBytes) bytes, compared \(report.bytesCompared), in \(String(format: "%.2f", report.seconds)) s, writes \(low)...\(high)")
        Shell.must("sleep 0.5")
        #expect(stamper.issued > high && stamper.error == nil, "the writer was still running during and after the resync: \(stamper.error ?? "")")
        // The writer touches only the first 16 MiB since the last point: that is what differs.
        #expect(report.bytesSent <= 17 << 20)
        stamper.stop()
        #expect(stamper.error == nil, "\(stamper.error ?? "")")
        // The resync's point was cut while the writer ran: it holds exactly the writes up to
        // one sequence number within the window of the resync call.
        let resynced = try #require(outcome.point, "resync --now made no point")
        let exported = site.root + "/export-resync"
        Shell.must("\"$RFS\" export \(vm) --target '\(site.root)/store' --point \(resynced.id) --disk d.img --to '\(exported)'")
        let problem = stamper.check(exports: [exported], sources: [site.mnt + "/d.img"], window: low...high)
        #expect(problem == nil, "point \(resynced.id): \(problem ?? "")")
        // Writers paused: the next point is the source as it is now.
        let source = Shell.sha256(site.mnt + "/d.img")
        let point = try snapshot(vm)
        #expect(point > (outcome.point?.id ?? old))
        #expect(exportSHA(site, vm, point: String(point), disk: "d.img") == source)
        #expect(exportSHA(site, vm, point: String(old), disk: "d.img") == oldSHA)
        site.unmount()
    }

    @Test("kill -9 of the daemon under write load, repeatedly: acknowledged writes reach the replica, old points stay, resyncs send little")
    func repeatedKillsUnderLoad() throws {
        let site = Site("resync-kill")
        defer { site.cleanup() }
        let vm = "rk\(getpid())"
        let mib = 128
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=\(mib) status=none")
        site.mount()
        protect(site, vm, disk: "d.img", extra: "--copy-frequency 2s --resync-window always")
        waitProtected(site, vm)
        // The writer's offsets (bash's RANDOM, seeded) and the delays before each kill follow
        // the seed; the moments the kills land relative to the writer do not.
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        // A writer across all the restarts, failing while the mount is dead: random 16 KiB writes
        // into a 16 MiB hot region (from 32 MiB), as a VM's writes cluster. Writes spread evenly
        // over the whole disk would dirty every 1 MiB block, and any block resync would send it all.
        Shell.must("( RANDOM=\(seed % 32768); while [ ! -e '\(site.root)/stop' ]; do dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=4 seek=$((8192 + RANDOM % 4092)) conv=notrunc,nocreat status=none 2>/dev/null || sleep 0.05; done ) >/dev/null 2>&1 & echo $! > '\(site.root)/writer.pid'")
        defer { Shell.run("touch '\(site.root)/stop'; p=$(cat '\(site.root)/writer.pid'); while kill -0 $p 2>/dev/null; do sleep 0.05; done") }
        var pointSHA: [Int: String] = [:]
        var lastPoint = try snapshot(vm)
        var sentTotal: [Int64] = []
        let started = Date()
        var rounds = 0
        while rounds < 10 && Date().timeIntervalSince(started) < 50 {
            let k = rounds
            // An fsync-acknowledged pattern in its own 64 KiB slot above the writer's range.
            Shell.must("dd if=/dev/urandom of='\(site.root)/pattern\(k)' bs=64k count=1 status=none")
            Shell.must("dd if='\(site.root)/pattern\(k)' of='\(site.mnt)/d.img' bs=64k seek=\(1600 + k) count=1 conv=notrunc,fsync status=none")
            Shell.must("sleep 0.\(rng.next() % 8 + 1)")
            let pid = try #require(site.daemonPID())
            Shell.must("kill -9 \(pid)")
            Shell.must("while kill -0 \(pid) 2>/dev/null; do sleep 0.05; done")
            site.mount()
            // The restart finds the unclean shutdown, resyncs, and commits a point right after.
            Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' --json | grep -q '\"state\" : \"protected\"' && exit 0; sleep 0.1; done; exit 1")
            let lines = resyncLines(site, vm)
            #expect(lines.count == k + 1, "round \(k): \(lines.count) resyncs logged")
            if let last = lines.last { sentTotal.append(last.sent) }
            let points = Shell.must("\"$RFS\" points \(vm) --target '\(site.root)/store' --json")
            let ids = try JSONDecoder().decode([Point].self, from: Data(points.utf8)).map(\.id)
            let newest = try #require(ids.max())
            #expect(newest > lastPoint, "round \(k): no point after the restart")
            lastPoint = newest
            // Every acknowledged pattern so far is in the newest point.
            let out = "\(site.root)/latest.img"
            Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(site.root)/store' --point \(newest) --disk d.img --to '\(out)'")
            pointSHA[newest] = Shell.sha256(out)
            for j in 0...k {
                let got = Shell.must("dd if='\(out)' bs=64k skip=\(1600 + j) count=1 status=none | sha256sum")
                let want = Shell.must("sha256sum < '\(site.root)/pattern\(j)'")
                #expect(got == want, "round \(k): acknowledged pattern \(j) missing from point \(newest)")
            }
            rounds += 1
        }
        Shell.must("touch '\(site.root)/stop'")
        print("kill -9 rounds (seed \(seed)): \(rounds); resync bytes sent per restart: \(sentTotal.map { String(format: "%.1f MiB", Double($0) / 1048576) }.joined(separator: ", ")) of \(mib) MiB")
        #expect(rounds >= 5)
        #expect(sentTotal.count == rounds && sentTotal.allSatisfy { $0 < Int64(mib) << 20 / 4 }, "a resync sent a quarter of the disk or more")
        // Every point recorded along the way still exports what it did.
        for (id, sha) in pointSHA.sorted(by: { $0.key < $1.key }) {
            #expect(exportSHA(site, vm, point: String(id), disk: "d.img") == sha, "point \(id) changed")
        }
        site.unmount()
    }
}
