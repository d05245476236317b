import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// Recovery plans without a mount: the YAML format and its one-line errors, and the runner
/// driven by real shell commands (true, false, sleep) as the per-VM action.
@Suite(.timeLimit(.minutes(2)))
struct RecoveryPlanTests {
    static let example = """
        name: finance
        target: /srv/dr-store          # default store for every VM
        mountRoot: /srv/failover       # each VM fails over to <mountRoot>/<vm> unless it names a mount
        point: latest
        networkMapping:
          prod-lan: dr-lan
        groups:
          - name: databases
            pre: "echo stopping"
            post: "echo started"
            vms:
              - name: db1
                point: latest-app
              - name: db2
                target: other-store
                mount: /mnt/db2
          - name: web
            vms: [{name: web1}]
        """

    func errorOf(_ text: String) -> String {
        do {
            _ = try RecoveryPlan.parse(text, source: "p.yaml", baseDirectory: "/plans")
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func parsesTheDocumentedExampleWithDefaultsAndOverrides() throws {
        let plan = try RecoveryPlan.parse(Self.example, source: "p.yaml", baseDirectory: "/plans")
        #expect(plan.name == "finance")
        #expect(plan.networkMapping == ["prod-lan": "dr-lan"])
        #expect(plan.groups.map(\.name) == ["databases", "web"])
        #expect(plan.groups[0].pre == "echo stopping" && plan.groups[0].post == "echo started")
        #expect(plan.groups[1].pre == nil && plan.groups[1].post == nil)
        #expect(plan.groups[0].vms == [
            RecoveryPlan.VM(name: "db1", target: "/srv/dr-store", point: "latest-app", mount: "/srv/failover/db1"),
            // A relative path is relative to the plan file's directory.
            RecoveryPlan.VM(name: "db2", target: "/plans/other-store", point: "latest", mount: "/mnt/db2"),
        ])
        #expect(plan.groups[1].vms == [RecoveryPlan.VM(name: "web1", target: "/srv/dr-store", point: "latest", mount: "/srv/failover/web1")])
    }

    @Test func badPlansGiveOneLineErrorsNamingTheLine() {
        let cases: [(String, String)] = [
            (Self.example.replacingOccurrences(of: "point: latest-app", with: "piont: latest-app"),
             "p.yaml:13: unknown key 'piont' in a VM of group databases"),
            (Self.example.replacingOccurrences(of: "mountRoot:", with: "mountroot:"), "p.yaml:3: unknown key 'mountroot' in the plan"),
            (Self.example.replacingOccurrences(of: "vms: [{name: web1}]", with: "vms: []"), "p.yaml:18: 'vms' in group web is empty"),
            (Self.example.replacingOccurrences(of: "vms: [{name: web1}]", with: "pre: x"), "p.yaml:17: group web has no 'vms'"),
            (Self.example.replacingOccurrences(of: "{name: web1}", with: "{name: db1}"), "p.yaml:18: VM db1 is named twice in the plan"),
            (Self.example.replacingOccurrences(of: "name: web\n", with: "name: databases\n"), "p.yaml:17: group databases is named twice"),
            (Self.example.replacingOccurrences(of: "target: /srv/dr-store", with: ""), "p.yaml:12: VM db1 has no target store"),
            (Self.example.replacingOccurrences(of: "mountRoot: /srv/failover", with: ""), "p.yaml:12: VM db1 has no mountpoint"),
            (Self.example.replacingOccurrences(of: "point: latest-app", with: "point: yesterday"), "p.yaml:13: bad recovery point 'yesterday'"),
            (Self.example.replacingOccurrences(of: "point: latest\n", with: "point: latest\npoint: 3\n"), "p.yaml:5: key 'point' is repeated in the plan"),
            (Self.example.replacingOccurrences(of: "name: finance", with: "name: \"\""), "p.yaml:1: 'name' in the plan is empty"),
            (Self.example.replacingOccurrences(of: "name: finance\n", with: ""), "the plan has no 'name'"),
            (Self.example.replacingOccurrences(of: "{name: web1}", with: "{name: ../x}"), "bad VM name '../x'"),
            (Self.example.replacingOccurrences(of: "prod-lan: dr-lan", with: "prod-lan:"), "'prod-lan' in networkMapping must be a text value"),
            (Self.example.replacingOccurrences(of: "mount: /mnt/db2", with: "mount: /srv/failover/db1"), "VMs db1 and db2 both fail over to /srv/failover/db1"),
            ("groups: [", "p.yaml: not valid YAML: line"),
            ("", "p.yaml: the plan is empty"),
            ("- a\n- b", "p.yaml:1: the plan must be a mapping of keys"),
        ]
        for (text, expected) in cases {
            let error = errorOf(text)
            #expect(error.contains(expected), "expected \(expected), got \(error)")
            #expect(!error.contains("\n"), "not one line: \(error)")
        }
    }

    /// Found by the plan-parse fuzz target: a quoted key holding line breaks made the error
    /// span several lines.
    @Test func aKeyWithLineBreaksStillGivesAOneLineError() {
        let error = errorOf("\"nam\\n\\ne\": x\n")
        #expect(error.split(separator: "\n").count == 1 && error.contains("unknown key 'nam\\n\\ne'"), "\(error)")
    }

    @Test func networksAreMappedAndAnUnmappedOneIsAnError() throws {
        let n = try FailoverNetworks(vm: "db1", plan: "finance", sourceNetworks: ["prod-lan", "backup"],
                                     mapping: ["prod-lan": "dr-lan", "backup": "dr-backup", "other": "x"])
        #expect(n.networks == [.init(source: "prod-lan", target: "dr-lan"), .init(source: "backup", target: "dr-backup")])
        #expect(throws: ReplicaError("VM db1 is attached to network mgmt that plan finance's networkMapping does not map")) {
            try FailoverNetworks(vm: "db1", plan: "finance", sourceNetworks: ["prod-lan", "mgmt"], mapping: ["prod-lan": "dr-lan"])
        }
    }

    @Test func vmMetadataRoundTripsThroughTheStoreAndOldSettingsStillDecode() throws {
        var template = Array("/tmp/rfs-plan-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vm = ProtectedVM(name: "db1", disks: ["os.img"], target: dir, policy: ReplicationPolicy(), networks: ["prod-lan"])
        let store: any TargetStore = try DirectoryStore(root: dir)
        try store.saveMetadata(VMMetadata(vm))
        #expect(try store.metadata(vm: "db1") == VMMetadata(vm: "db1", disks: ["os.img"], networks: ["prod-lan"], policy: ReplicationPolicy()))
        #expect(try store.metadata(vm: "nope") == nil)
        // Settings saved before networks existed decode with none.
        let old = #"{"name":"a","disks":["x.img"],"target":"/s","policy":{"copyFrequency":300,"retention":86400}}"#
        let decoded = try JSONDecoder().decode(ProtectedVM.self, from: Data(old.utf8))
        #expect(decoded.networks == nil && VMMetadata(decoded).networks == [])
        try FailoverNetworks(vm: "db1", plan: "p", sourceNetworks: ["prod-lan"], mapping: ["prod-lan": "dr"]).save(in: dir)
        let written = try JSONDecoder().decode(FailoverNetworks.self, from: Data(try FileSystem.readFile(dir + "/network.json")))
        #expect(written.networks == [.init(source: "prod-lan", target: "dr")])
    }

    // MARK: The runner, with shell commands as VM actions

    /// A plan whose VMs' names say what their action runs: a VM named "sleep-1-a" runs `sleep 1`.
    func plan(_ groups: [(String, [String], pre: String?, post: String?)]) -> RecoveryPlan {
        RecoveryPlan(name: "t", groups: groups.map { g in
            RecoveryPlan.Group(name: g.0, pre: g.pre, post: g.post, vms: g.1.map {
                RecoveryPlan.VM(name: $0, target: "/s", point: "latest", mount: "/m/" + $0)
            })
        })
    }

    /// `commands[vm]` run with /bin/sh; a non-zero status fails the VM.
    func runner(_ plan: RecoveryPlan, _ commands: [String: String], log: String) -> PlanRunner {
        PlanRunner(plan: plan, operation: "test-failover") { vm in
            let command = commands[vm.name]! + " && echo \(vm.name) >> '\(log)'"
            let r = try CapturedCommand.shell(command, timeout: 30)
            guard r.ok else { throw ReplicaError("\(vm.name): '\(commands[vm.name]!)' exited with status \(r.status)") }
        }
    }

    func tempFile() -> String {
        var template = Array("/tmp/rfs-plan-log-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        close(fd)
        return String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func groupsRunInOrderWithHooksAroundThem() throws {
        let log = tempFile()
        defer { unlink(log) }
        let p = plan([("first", ["a", "b"], pre: "echo pre-first >> '\(log)'", post: "echo post-first >> '\(log)'"),
                      ("second", ["c"], pre: "echo pre-second >> '\(log)'", post: "echo post-second >> '\(log)'")])
        let report = runner(p, ["a": "sleep 0.2", "b": "true", "c": "true"], log: log).run()
        #expect(report.ok && report.failedVMs.isEmpty && report.notStarted.isEmpty)
        let order = lines(log)
        // b finishes before a (a sleeps), but both lie between the first group's hooks.
        #expect(order == ["pre-first", "b", "a", "post-first", "pre-second", "c", "post-second"], "\(order)")
        #expect(report.groups.map(\.outcome) == [.ok, .ok])
        #expect(report.groups[0].pre?.outcome == .ok && report.groups[0].post?.outcome == .ok)
    }

    @Test func theVMsOfAGroupRunInParallel() throws {
        let log = tempFile()
        defer { unlink(log) }
        let start = Date()
        let report = runner(plan([("g", ["a", "b", "c"], pre: nil, post: nil)]), ["a": "sleep 1", "b": "sleep 1", "c": "sleep 1"], log: log).run()
        let elapsed = Date().timeIntervalSince(start)
        #expect(report.ok)
        #expect(elapsed >= 1 && elapsed < 1.8, "three 1 s VMs took \(elapsed) s")
        #expect(report.groups[0].vms.allSatisfy { $0.seconds >= 1 && $0.seconds < 1.8 })
        #expect(Set(lines(log)) == ["a", "b", "c"])
    }

    @Test func aFailedVMStopsThePlanAndTheNextGroupDoesNotStart() throws {
        let log = tempFile()
        defer { unlink(log) }
        let p = plan([("first", ["ok1", "bad", "slow"], pre: nil, post: "echo post-first >> '\(log)'"),
                      ("second", ["later"], pre: "echo pre-second >> '\(log)'", post: nil)])
        let report = runner(p, ["ok1": "true", "bad": "false", "slow": "sleep 0.5", "later": "true"], log: log).run()
        #expect(!report.ok)
        #expect(report.failedVMs == ["bad"])
        #expect(report.notStarted == ["second"])
        // The VMs already running in the failed group finish; nothing after them runs.
        #expect(Set(lines(log)) == ["ok1", "slow"], "\(lines(log))")
        let first = report.groups[0]
        #expect(first.outcome == .failed)
        #expect(first.vms.map(\.outcome) == [.ok, .failed, .ok])
        #expect(first.vms[1].error == "bad: 'false' exited with status 1")
        #expect(first.post?.outcome == .skipped)
        #expect(report.groups[1].outcome == .skipped && report.groups[1].vms.map(\.outcome) == [.skipped])
        #expect(report.groups[1].pre?.outcome == .skipped)
        let text = report.text
        #expect(text.contains("bad   FAILED") && text.contains("group second: not started"), "\(text)")
        #expect(text.hasSuffix("failed VMs: bad; groups not started: second"), "\(text)")
    }

    @Test func aFailedHookStopsThePlan() throws {
        let log = tempFile()
        defer { unlink(log) }
        // A failing pre command: the group's VMs do not start.
        var report = runner(plan([("g", ["a"], pre: "echo no quorum >&2; exit 3", post: nil), ("h", ["b"], pre: nil, post: nil)]),
                            ["a": "true", "b": "true"], log: log).run()
        #expect(!report.ok && report.failedHooks == ["g/pre"] && report.failedVMs.isEmpty && report.notStarted == ["h"])
        #expect(report.groups[0].pre?.error == "pre command exited with status 3: no quorum")
        #expect(report.groups[0].vms.map(\.outcome) == [.skipped])
        #expect(lines(log).isEmpty)
        // A failing post command: the VMs ran, the next group does not.
        report = runner(plan([("g", ["a"], pre: nil, post: "false"), ("h", ["b"], pre: nil, post: nil)]),
                        ["a": "true", "b": "true"], log: log).run()
        #expect(!report.ok && report.failedHooks == ["g/post"] && report.notStarted == ["h"])
        #expect(lines(log) == ["a"])
    }

    @Test func theReportRoundTripsAsJSON() throws {
        let log = tempFile()
        defer { unlink(log) }
        let report = runner(plan([("g", ["a", "bad"], pre: "true", post: nil), ("h", ["b"], pre: nil, post: nil)]),
                            ["a": "true", "bad": "exit 2", "b": "true"], log: log).run()
        let json = try report.json()
        let decoded = try JSONDecoder().decode(PlanReport.self, from: Data(json.utf8))
        #expect(decoded == report)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == false)
        #expect(object["failedVMs"] as? [String] == ["bad"])
        #expect(object["notStarted"] as? [String] == ["h"])
        #expect(object["operation"] as? String == "test-failover")
    }

    @Test func capturedCommandsReportTheirErrorLine() throws {
        let r = try CapturedCommand.shell("echo progress; echo 'replicafs: no VM ghost in store /s' >&2; echo trailer >&2; exit 1", timeout: 10)
        #expect(r.status == 1 && r.stdout == "progress\n")
        #expect(r.errorLine == "no VM ghost in store /s")
        #expect(throws: ReplicaError("'/bin/sh -c sleep 5' timed out after 0 s")) { try CapturedCommand.shell("sleep 5", timeout: 0.2) }
    }
}
