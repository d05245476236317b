import Foundation
import Testing

/// When protection does things by itself: app-consistent points every `--app-consistent-every`
/// (quiesce and thaw run around each), and the initial copy at `--initial now`, at an ISO
/// time and at the next `HH:MM`.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ScheduleTests {
    @Test("--app-consistent-every 2s with a 1 h copy frequency: app-consistent points come by themselves about 2 s apart, each between a quiesce and a thaw, holding the disk as it was")
    func appConsistentEvery() throws {
        let site = Site("appevery")
        defer { site.cleanup() }
        let probe = VMProbe(site: site)
        let hooks = site.root + "/hooks"
        Shell.must("dd if=/dev/urandom of='\(site.disks)/a.img' bs=1M count=8 status=none")
        site.mount()
        probe.protect("ae", disk: "a.img", "--copy-frequency 1h --app-consistent-every 2s --quiesce \"echo quiesce >> '\(hooks)'\" --thaw \"echo thaw >> '\(hooks)'\"")
        #expect(probe.waitFor("ae", seconds: 30) { $0.state == "protected" && $0.lastPoint != nil }?.state == "protected")
        func appPoints() throws -> [VMProbe.Point] { try probe.points("ae").filter { $0.consistency == "app" } }
        func waitApp(after id: Int) throws -> VMProbe.Point? {
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline {
                if let p = try appPoints().first(where: { $0.id > id }) { return p }
                usleep(200_000)
            }
            return nil
        }
        let first = try #require(try waitApp(after: 0), "no app-consistent point within 15 s")
        // A change after the first app point, then nothing: the next app point holds it.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/a.img' bs=64k count=8 seek=5 conv=notrunc,fsync status=none")
        let sum = Shell.sha256(site.mnt + "/a.img")
        let second = try #require(try waitApp(after: first.id), "no second app-consistent point")
        #expect(probe.exported("ae", point: String(second.id), disk: "a.img") == sum)
        let gap = try #require(VMProbe.date(second.time)).timeIntervalSince(try #require(VMProbe.date(first.time)))
        #expect(gap >= 1.5 && gap < 10, "app-consistent points \(gap) s apart for an interval of 2 s")
        // Every app point had its quiesce and thaw, in that order.
        let ran = Shell.must("cat '\(hooks)'").split(separator: "\n").map(String.init)
        let apps = try appPoints().count
        #expect(ran.count >= 2 * apps && ran.count % 2 == 0, "hooks \(ran) for \(apps) app points")
        #expect(ran.enumerated().allSatisfy { $0.element == ($0.offset % 2 == 0 ? "quiesce" : "thaw") }, "\(ran)")
        // Crash-consistent cycles stay at the 1 h frequency: the only crash points are from the initial copy.
        let crash = try probe.points("ae").filter { $0.consistency == "crash" }
        #expect(crash.allSatisfy { $0.id < first.id }, "crash points after the first app point: \(crash.map(\.id))")
        site.unmount()
    }

    @Test("--initial now copies at once; an ISO time a few seconds ahead waits for it, then copies; HH:MM is scheduled for the next such local time")
    func initialNowAtAndHHMM() throws {
        let site = Site("initial")
        defer { site.cleanup() }
        let probe = VMProbe(site: site)
        Shell.must("for d in n i h; do dd if=/dev/urandom of='\(site.disks)/'$d.img bs=1M count=4 status=none; done")
        site.mount()
        func copied(_ vm: String) -> Bool { FileManager.default.fileExists(atPath: "\(probe.store)/\(vm)/catalog.json") }

        probe.protect("now", disk: "n.img", "--copy-frequency 1h --initial now")
        #expect(probe.waitFor("now", seconds: 20) { $0.lastPoint != nil }?.lastPoint != nil, "--initial now did not copy")
        #expect(probe.exported("now", point: "latest", disk: "n.img") == Shell.sha256(site.mnt + "/n.img"))

        // An ISO time 6 s ahead (whole seconds, as typed).
        let at = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 6).rounded(.down))
        let atText = ISO8601DateFormatter().string(from: at)
        probe.protect("iso", disk: "i.img", "--copy-frequency 1h --initial \(atText)")
        let scheduled = Shell.must("for i in $(seq 1 40); do out=$(\"$RFS\" jobs); case \"$out\" in *\"scheduled for\"*) echo \"$out\"; exit 0;; esac; sleep 0.1; done; \"$RFS\" jobs")
        #expect(scheduled.contains("scheduled for \(VMProbe.iso(at))"), "jobs: \(scheduled)")
        Shell.must("sleep 2")
        #expect(!copied("iso") && probe.state("iso")?.state.contains("scheduled") == true, "copied before \(atText): \(String(describing: probe.state("iso")))")
        let s = probe.waitFor("iso", seconds: 25) { $0.lastPoint != nil }
        #expect(s?.lastPoint != nil && copied("iso"), "not copied after \(atText): \(String(describing: s))")
        let first = try #require(try probe.points("iso").first)
        let firstTime = try #require(VMProbe.date(first.time))
        #expect(firstTime >= at, "the first point (\(first.time)) is older than the scheduled start \(atText)")
        #expect(probe.exported("iso", point: "latest", disk: "i.img") == Shell.sha256(site.mnt + "/i.img"))

        // HH:MM two minutes ahead, local time: scheduled for exactly that minute (today, or
        // tomorrow when it has passed), and nothing copied meanwhile.
        let hhmm = Shell.must("date -d '+2 minutes' +%H:%M")
        let expected = Shell.must("t=$(date -d '\(hhmm)' +%s); [ $t -gt $(date +%s) ] || t=$(date -d 'tomorrow \(hhmm)' +%s); date -u -d @$t +%Y-%m-%dT%H:%M:%S.000Z")
        probe.protect("hm", disk: "h.img", "--copy-frequency 1h --initial \(hhmm)")
        // The running mount picks a protection up at its next pass: wait for it to list it.
        let jobs = Shell.must("for i in $(seq 1 100); do out=$(\"$RFS\" jobs); case \"$out\" in *\"scheduled for \(expected)\"*) echo \"$out\"; exit 0;; esac; sleep 0.1; done; \"$RFS\" jobs")
        #expect(jobs.contains("hm\t") && jobs.contains("scheduled for \(expected)"), "--initial \(hhmm): \(jobs)")
        Shell.must("sleep 1")
        #expect(!copied("hm"), "--initial \(hhmm) copied at once")
        let bad = Shell.run("touch '\(site.disks)/x.img' && \"$RFS\" protect bad --disks-dir '\(site.disks)' --disk x.img --target '\(probe.store)' --initial 25:00")
        #expect(!bad.ok && bad.stderr.contains("bad --initial time '25:00'") && bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        site.unmount()
    }
}
