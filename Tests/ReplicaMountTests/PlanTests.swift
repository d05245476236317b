import Foundation
import Testing

/// A recovery plan run for real: `replicafs plan test-failover` runs `replicafs failover ...
/// --test` per VM (the failover command of issue 4), on a store filled by a real protected mount.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct PlanTests {
    struct Report: Decodable {
        struct VM: Decodable { var name: String; var outcome: String; var error: String? }
        struct Group: Decodable { var name: String; var outcome: String; var vms: [VM] }
        var ok: Bool
        var failedVMs: [String]
        var notStarted: [String]
        var groups: [Group]
    }

    struct Networks: Decodable {
        struct Mapping: Decodable, Equatable { var source: String; var target: String }
        var vm: String
        var networks: [Mapping]
    }

    func isMounted(_ path: String) -> Bool { Shell.run("grep -q ' \(path) ' /proc/mounts").ok }

    @Test("a recovery plan of two groups where one VM fails: the report names it and the second group does not start")
    func failedVMStopsThePlan() throws {
        let site = Site("plan")
        let store = site.root + "/store", failover = site.root + "/failover"
        // The drill of db1 is ended even when an expectation fails midway.
        defer {
            Shell.run("\"$RFS\" failover cleanup db1 --target '\(store)'")
            site.extraMounts.append(failover + "/db1")
            site.cleanup()
        }
        Shell.must("mkdir -p '\(store)'")
        Shell.must("dd if=/dev/urandom of='\(site.disks)/db1.img' bs=1M count=8 status=none && dd if=/dev/urandom of='\(site.disks)/web1.img' bs=1M count=4 status=none")
        site.mount()
        for vm in ["db1", "web1"] {
            Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk \(vm).img --target '\(store)' --copy-frequency 1h --network prod-lan")
        }
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/db1.img' bs=4k count=16 seek=3 conv=notrunc,fsync status=none")
        Shell.must("\"$RFS\" snapshot db1 --wait && \"$RFS\" snapshot web1 --wait")
        let db1AtPoint = Shell.sha256(site.mnt + "/db1.img")
        // ghost was never protected: the store has no such VM, so its failover fails for real.
        let plan = """
            name: drill
            target: \(store)
            mountRoot: \(failover)
            point: latest
            networkMapping:
              prod-lan: dr-lan
            groups:
              - name: first
                post: "touch '\(site.root)/post-first'"
                vms:
                  - name: db1
                  - name: ghost
              - name: second
                pre: "touch '\(site.root)/pre-second'"
                vms: [{name: web1}]
            """
        try plan.write(toFile: site.root + "/plan.yaml", atomically: true, encoding: .utf8)

        let r = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml' --json")
        #expect(!r.ok, "the plan must fail: \(r.stdout)\n\(r.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        #expect(!report.ok)
        #expect(report.failedVMs == ["ghost"], "\(r.stdout)")
        #expect(report.notStarted == ["second"])
        let first = try #require(report.groups.first)
        #expect(first.outcome == "failed" && first.vms.map(\.outcome) == ["ok", "failed"], "\(r.stdout)")
        let ghostError = first.vms[1].error ?? ""
        #expect(ghostError.contains("ghost"), "the failover's own error should name the VM: \(ghostError)")
        #expect(report.groups[1].vms.map(\.outcome) == ["skipped"])
        // One line on stderr names the failed VM and the group that did not start.
        let last = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.contains("VM ghost failed") && last.contains("groups not started: second"), "\(r.stderr)")
        // Progress lines went to stderr as each VM started and ended.
        #expect(r.stderr.contains("db1: test-failover starting") && r.stderr.contains("ghost: test-failover FAILED"), "\(r.stderr)")

        // db1, in the same group, failed over: its disk as of the point, and its mapped networks.
        #expect(isMounted(failover + "/db1"))
        #expect(Shell.sha256(failover + "/db1/db1.img") == db1AtPoint)
        let served = try JSONDecoder().decode(Networks.self, from: Data(Shell.must("cat '\(failover)/db1/network.json'").utf8))
        #expect(served.vm == "db1" && served.networks == [.init(source: "prod-lan", target: "dr-lan")])
        // The group's post command and everything in the second group never ran.
        #expect(!FileManager.default.fileExists(atPath: site.root + "/post-first"))
        #expect(!FileManager.default.fileExists(atPath: site.root + "/pre-second"))
        #expect(!isMounted(failover + "/web1"))
        #expect(!FileManager.default.fileExists(atPath: store + "/web1/failover"))
        // The failed VM left no trace: no mountpoint, nothing in the store.
        #expect(!FileManager.default.fileExists(atPath: failover + "/ghost"))
        #expect(!FileManager.default.fileExists(atPath: store + "/ghost"))

        // The text report says the same to a person.
        Shell.must("\"$RFS\" failover cleanup db1 --target '\(store)'")
        #expect(!isMounted(failover + "/db1"))
        let text = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml'")
        #expect(!text.ok)
        #expect(text.stdout.contains("group second: not started") && text.stdout.contains("failed VMs: ghost; groups not started: second"),
                "\(text.stdout)")
        #expect(text.stdout.split(separator: "\n").contains { $0.contains("ghost") && $0.contains("FAILED") }, "\(text.stdout)")
    }
}
