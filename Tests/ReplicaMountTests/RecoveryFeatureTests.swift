import Foundation
import Testing

/// Failover and failback promises of the README with no test of their own: a failover at an
/// ISO time, `reprotect --to` another disks directory, and `plan failover` / `plan failback`
/// run for real, the failback keeping the earlier points.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct RecoveryFeatureTests {
    @Test("failover --point ISO-time mounts the latest point at or before that time; a time before every point is refused with one line")
    func failoverAtATime() throws {
        let site = Site("fo-iso")
        defer { site.cleanup() }
        let probe = VMProbe(site: site), fm = site.root + "/fo"
        site.extraMounts.append(fm)
        Shell.must("mkdir -p '\(fm)' && dd if=/dev/urandom of='\(site.disks)/t.img' bs=1M count=8 status=none")
        site.mount()
        probe.protect("tv", disk: "t.img", "--copy-frequency 1h")
        #expect(probe.waitFor("tv", seconds: 30) { $0.state == "protected" && $0.lastPoint != nil }?.state == "protected")
        var sums: [Int: String] = [:]
        var ids: [Int] = []
        for i in 0..<3 {
            if i > 0 { Shell.must("sleep 1.2") }
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/t.img' bs=64k count=4 seek=\(10 * i) conv=notrunc,fsync status=none")
            let sum = Shell.sha256(site.mnt + "/t.img")
            let p = try probe.snapshot("tv")
            sums[p.id] = sum
            ids.append(p.id)
        }
        let points = try probe.points("tv")
        let time = { (id: Int) throws -> Date in
            let p = try #require(points.first { $0.id == id })
            return try #require(VMProbe.date(p.time))
        }
        let (p1, p2, p3) = (ids[0], ids[1], ids[2])
        let t2 = try time(p2), t3 = try time(p3)
        #expect(t3.timeIntervalSince(t2) > 1, "points \(p2) and \(p3) are too close for the test: \(t2) \(t3)")
        struct Failover: Decodable { var point: Int }
        // (time given, point expected): exactly at p2; just before p3; after every point.
        let cases: [(String, Int)] = [(VMProbe.iso(t2), p2), (VMProbe.iso(t3.addingTimeInterval(-0.3)), p2),
                                      (ISO8601DateFormatter().string(from: t3.addingTimeInterval(5)), p3)]
        for (at, want) in cases {
            let out = Shell.must("\"$RFS\" failover tv --target '\(probe.store)' --point \(at) --mount '\(fm)' --test --json")
            let fo = try JSONDecoder().decode(Failover.self, from: Data(out.utf8))
            #expect(fo.point == want, "--point \(at): point \(fo.point), expected \(want) (points \(points.map { ($0.id, $0.time) }), now \(String(describing: (try? probe.points("tv"))?.map { ($0.id, $0.time) })))")
            #expect(Shell.sha256(fm + "/t.img") == sums[want], "--point \(at) shows other bytes than point \(want)")
            Shell.must("\"$RFS\" failover cleanup tv --target '\(probe.store)'")
        }
        // Before the first point there is nothing to fail over to; nothing changes.
        let first = try #require(points.map(\.id).min())
        let before = VMProbe.iso(try time(first).addingTimeInterval(-60))
        let r = Shell.run("\"$RFS\" failover tv --target '\(probe.store)' --point \(before) --mount '\(fm)' --test")
        #expect(!r.ok && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(before), "\(r.stderr)")
        #expect(!VMProbe.isMounted(fm) && !FileManager.default.fileExists(atPath: probe.store + "/tv/failover"))
        #expect(p1 < p2 && sums[p1] != sums[p2])
        site.unmount()
    }

    @Test("reprotect --to another disks directory: the disks are created there equal to the failed-over ones, reverse replication follows, failback lands there; the old site is untouched")
    func reprotectToAnotherDirectory() throws {
        let site = Site("reprotect-to")
        defer { site.cleanup() }
        let probe = VMProbe(site: site), fm = site.root + "/fo", newHome = site.root + "/newhome"
        site.extraMounts.append(fm)
        Shell.must("mkdir -p '\(fm)' && dd if=/dev/urandom of='\(site.disks)/r.img' bs=1M count=16 status=none")
        site.mount()
        probe.protect("rv", disk: "r.img", "--copy-frequency 1h")
        #expect(probe.waitFor("rv", seconds: 30) { $0.state == "protected" && $0.lastPoint != nil }?.state == "protected")
        _ = try probe.snapshot("rv")
        site.unmount()
        let oldSite = Shell.sha256(site.disks + "/r.img")
        Shell.must("\"$RFS\" failover rv --target '\(probe.store)' --point latest --mount '\(fm)'")
        Shell.must("dd if=/dev/urandom of='\(fm)/r.img' bs=1M count=1 seek=3 conv=notrunc,fsync status=none")
        // --to and --disks-dir together: one line, nothing done.
        let both = Shell.run("\"$RFS\" reprotect rv --target '\(probe.store)' --to '\(newHome)' --disks-dir '\(newHome)'")
        #expect(!both.ok && both.stderr.contains("give --disks-dir once") && !FileManager.default.fileExists(atPath: newHome), "\(both.stderr)")
        Shell.must("\"$RFS\" reprotect rv --target '\(probe.store)' --to '\(newHome)' --copy-frequency 1s")
        #expect(Shell.sha256(newHome + "/r.img") == Shell.sha256(fm + "/r.img"), "reprotect --to did not bring the disk to \(newHome)")
        #expect(Shell.sha256(site.disks + "/r.img") == oldSite, "reprotect --to changed the original site")
        // Reverse replication ships to the new directory.
        Shell.must("dd if=/dev/urandom of='\(fm)/r.img' bs=4k count=16 seek=900 conv=notrunc,fsync status=none")
        let shipped = Shell.sha256(fm + "/r.img")
        Shell.must("for i in $(seq 1 100); do [ \"$(sha256sum < '\(newHome)/r.img' | cut -c1-64)\" = \(shipped) ] && exit 0; sleep 0.1; done; exit 1")
        // Failback goes where reprotect went, without naming it again.
        Shell.must("dd if=/dev/urandom of='\(fm)/r.img' bs=4k count=2 seek=50 conv=notrunc,fsync status=none")
        let final = Shell.sha256(fm + "/r.img")
        Shell.must("\"$RFS\" failback rv --target '\(probe.store)' --mode minimize-downtime")
        #expect(!VMProbe.isMounted(fm))
        #expect(Shell.sha256(newHome + "/r.img") == final, "failback did not land in the reprotected directory")
        #expect(Shell.sha256(site.disks + "/r.img") == oldSite, "failback wrote the original site")
    }

    @Test("plan failover and plan failback run for real over two groups: disks at the plan's point, hooks in order, the VMs' writes back home, and the points before the failover kept")
    func planFailoverAndFailback() throws {
        let site = Site("plan-run")
        let probe = VMProbe(site: site), root = site.root + "/failover"
        defer {
            for vm in ["pa", "pb"] {
                Shell.run("\"$RFS\" failover cleanup \(vm) --target '\(probe.store)'")
                site.extraMounts.append(root + "/" + vm)
            }
            site.cleanup()
        }
        Shell.must("for v in pa pb; do dd if=/dev/urandom of='\(site.disks)/'$v.img bs=1M count=4 status=none; done")
        site.mount()
        var early: [String: (id: Int, sum: String)] = [:], late: [String: (id: Int, sum: String)] = [:]
        for vm in ["pa", "pb"] {
            probe.protect(vm, disk: vm + ".img", "--copy-frequency 1h")
            #expect(probe.waitFor(vm, seconds: 30) { $0.state == "protected" && $0.lastPoint != nil }?.state == "protected")
        }
        for vm in ["pa", "pb"] {
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/\(vm).img' bs=4k count=8 seek=7 conv=notrunc,fsync status=none")
            early[vm] = (try probe.snapshot(vm).id, Shell.sha256(site.mnt + "/\(vm).img"))
            Shell.must("dd if=/dev/urandom of='\(site.mnt)/\(vm).img' bs=4k count=8 seek=70 conv=notrunc,fsync status=none")
            late[vm] = (try probe.snapshot(vm).id, Shell.sha256(site.mnt + "/\(vm).img"))
        }
        site.unmount()
        let log = site.root + "/hooks"
        let plan = """
            name: both
            target: \(probe.store)
            mountRoot: \(root)
            point: latest
            groups:
              - name: first
                pre: "echo pre-first >> '\(log)'"
                post: "echo post-first >> '\(log)'"
                vms: [{name: pa}]
              - name: second
                pre: "echo pre-second >> '\(log)'"
                vms: [{name: pb}]
            """
        try plan.write(toFile: site.root + "/plan.yaml", atomically: true, encoding: .utf8)
        struct Report: Decodable { var ok: Bool; var failedVMs: [String]; var notStarted: [String] }

        let fo = Shell.run("\"$RFS\" plan failover '\(site.root)/plan.yaml' --json")
        #expect(fo.ok, "plan failover: \(fo.stdout)\n\(fo.stderr)")
        let foReport = try JSONDecoder().decode(Report.self, from: Data(fo.stdout.utf8))
        #expect(foReport.ok && foReport.failedVMs.isEmpty && foReport.notStarted.isEmpty)
        #expect(Shell.must("cat '\(log)'") == "pre-first\npost-first\npre-second", "hooks ran out of order")
        var running: [String: String] = [:]
        for vm in ["pa", "pb"] {
            let disk = "\(root)/\(vm)/\(vm).img"
            #expect(VMProbe.isMounted(root + "/" + vm))
            #expect(Shell.sha256(disk) == late[vm]!.sum, "\(vm) is not at the latest point")
            #expect(Shell.must("\"$RFS\" status").contains("VM \(vm) at point \(late[vm]!.id)"))
            // The VM runs at the secondary site.
            Shell.must("dd if=/dev/urandom of='\(disk)' bs=4k count=16 seek=300 conv=notrunc,fsync status=none")
            running[vm] = Shell.sha256(disk)
        }

        let back = Shell.run("\"$RFS\" plan failback '\(site.root)/plan.yaml' --mode full-download --json")
        #expect(back.ok, "plan failback: \(back.stdout)\n\(back.stderr)")
        let backReport = try JSONDecoder().decode(Report.self, from: Data(back.stdout.utf8))
        #expect(backReport.ok && backReport.failedVMs.isEmpty)
        for vm in ["pa", "pb"] {
            #expect(!VMProbe.isMounted(root + "/" + vm), "\(vm) still failed over")
            #expect(Shell.sha256(site.disks + "/\(vm).img") == running[vm], "\(vm)'s writes at the secondary did not come home")
            // The points from before the failover are kept and export as they were.
            let ids = try probe.points(vm).map(\.id)
            #expect(ids.contains(early[vm]!.id) && ids.contains(late[vm]!.id), "\(vm) points after failback: \(ids)")
            #expect(probe.exported(vm, point: String(early[vm]!.id), disk: vm + ".img") == early[vm]!.sum)
            #expect(probe.exported(vm, point: String(late[vm]!.id), disk: vm + ".img") == late[vm]!.sum)
        }
        // Protection resumes at home: the next point holds the failed-back disk.
        site.mount()
        #expect(probe.waitFor("pa", seconds: 30) { $0.state == "protected" }?.state == "protected")
        let next = try probe.snapshot("pa")
        #expect(next.id > late["pa"]!.id)
        #expect(probe.exported("pa", point: String(next.id), disk: "pa.img") == running["pa"])
        site.unmount()
    }
}
