import Foundation
import Testing

/// `replicafs plan` and `protect --network` through the real binary, on what is checked before
/// anything starts (no failover needed): bad plans and unmapped networks are one clear line
/// on stderr, a non-zero exit, and nothing run or created.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct PlanCommandTests {
    /// Every file and directory under `dir`, for "nothing changed" checks.
    func tree(_ dir: String) -> String {
        Shell.must("cd '\(dir)' && find . -print0 | sort -z | xargs -0 -r ls -ld --time-style=+%s%N | awk '{print $1, $5, $6, $7}'")
    }

    func refuses(_ args: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = Shell.run("\"$RFS\" \(args)")
        #expect(!r.ok, "expected failure: replicafs \(args)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.contains(message), "replicafs \(args): stderr was \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test("protect --network records the networks in the VM's settings and in the store's vm.json")
    func protectRecordsNetworks() throws {
        let site = Site("plan-net")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 4M '\(site.disks)/db1.img' '\(site.disks)/web1.img'")
        let before = tree(site.root)
        refuses("protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(site.root)/store' --network a --network a",
                "a network is named twice")
        refuses("protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(site.root)/store' --network ''", "bad network name ''")
        #expect(tree(site.root) == before)
        Shell.must("\"$RFS\" protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(site.root)/store' --network prod-lan --network backup")
        struct Meta: Decodable { var vm: String; var disks: [String]; var networks: [String] }
        let meta = try JSONDecoder().decode(Meta.self, from: Data(Shell.must("cat '\(site.root)/store/db1/vm.json'").utf8))
        #expect(meta.vm == "db1" && meta.disks == ["db1.img"] && meta.networks == ["prod-lan", "backup"])
        struct VM: Decodable { var networks: [String]? }
        let settings = try JSONDecoder().decode(VM.self, from: Data(Shell.must("cat '\(site.disks)/.replicafs/vms/db1.json'").utf8))
        #expect(settings.networks == ["prod-lan", "backup"])
        // No --network: the store still learns the disks, with no networks.
        Shell.must("\"$RFS\" protect web1 --disks-dir '\(site.disks)' --disk web1.img --target '\(site.root)/store'")
        let web = try JSONDecoder().decode(Meta.self, from: Data(Shell.must("cat '\(site.root)/store/web1/vm.json'").utf8))
        #expect(web.networks == [] && web.disks == ["web1.img"])
    }

    @Test("a bad plan or an unmapped network stops the plan before any hook or VM runs")
    func badPlansChangeNothing() throws {
        let site = Site("plan-bad")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 4M '\(site.disks)/db1.img'")
        Shell.must("\"$RFS\" protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(site.root)/store' --network prod-lan --network mgmt")
        let plan = """
            name: drill
            target: store
            mountRoot: failover
            networkMapping:
              prod-lan: dr-lan
            groups:
              - name: first
                pre: "touch '\(site.root)/pre-ran'"
                vms:
                  - name: db1
            """
        try plan.write(toFile: site.root + "/plan.yaml", atomically: true, encoding: .utf8)
        let before = tree(site.root)
        // mgmt is not mapped: refused before the pre command or any failover.
        refuses("plan test-failover '\(site.root)/plan.yaml'", "VM db1 is attached to network mgmt that plan drill's networkMapping does not map")
        refuses("plan failover '\(site.root)/plan.yaml' --json", "does not map")
        #expect(tree(site.root) == before)
        #expect(!FileManager.default.fileExists(atPath: site.root + "/pre-ran"))

        try plan.replacingOccurrences(of: "  - name: db1", with: "  - name: db1\n        pointt: latest")
            .write(toFile: site.root + "/typo.yaml", atomically: true, encoding: .utf8)
        refuses("plan failover '\(site.root)/typo.yaml'", "typo.yaml:11: unknown key 'pointt' in a VM of group first")
        refuses("plan failover '\(site.root)/nope.yaml'", "plan file \(site.root)/nope.yaml does not exist")
        refuses("plan test-failover '\(site.root)/plan.yaml' --planned", "--planned goes with plan failover only")
        refuses("plan failback '\(site.root)/plan.yaml' --mode fast", "bad failback mode 'fast'")
        let usage = Shell.run("\"$RFS\" plan drill '\(site.root)/plan.yaml'")
        #expect(!usage.ok && usage.stderr.contains("The value 'drill' is invalid for '<operation>'"), "\(usage.stderr)")
        #expect(!FileManager.default.fileExists(atPath: site.root + "/pre-ran"))
        #expect(!FileManager.default.fileExists(atPath: site.root + "/failover"))
    }

    @Test("a VM whose failover fails leaves no network.json, failover directory or mountpoint behind")
    func failedFailoverLeavesNoTrace() throws {
        let site = Site("plan-trace")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && dd if=/dev/urandom of='\(site.disks)/db1.img' bs=1M count=4 status=none")
        site.mount()
        Shell.must("\"$RFS\" protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(store)' --copy-frequency 1h --network prod-lan")
        Shell.must("\"$RFS\" snapshot db1 --wait")
        #expect(FileManager.default.fileExists(atPath: store + "/db1/catalog.json"))
        // Point 999 does not exist: the failover fails after the plan wrote network.json and
        // created the mountpoint (and its missing parents).
        let plan = """
            name: drill
            target: store
            mountRoot: fo/deeper
            point: 999
            networkMapping: {prod-lan: dr-lan}
            groups:
              - name: only
                vms: [{name: db1}]
            """
        try plan.write(toFile: site.root + "/plan.yaml", atomically: true, encoding: .utf8)
        let r = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml'")
        #expect(!r.ok)
        #expect(r.stdout.contains("failed VMs: db1; groups not started: none"), "\(r.stdout)")
        #expect(r.stderr.split(separator: "\n").last?.contains("plan drill: test-failover stopped: VM db1 failed") == true, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: store + "/db1/failover"))
        #expect(!FileManager.default.fileExists(atPath: site.root + "/fo"))
    }

    @Test("a plan fails over a VM protected to replicafs:// with its own PKI directory: the plan opens the store with the options saved at protect (no --pki given), the test failover's disk equals the point, and a DR host that has no saved options gives --pki")
    func planUsesTheVMsSavedStoreOptions() throws {
        let site = Site("plan-remote")
        let receiver = RemoteReplicationTests.Receiver(site)
        site.extraMounts.append(site.root + "/fo/r1")
        defer {
            Shell.run("\"$RFS\" failover cleanup r1 >/dev/null 2>&1")
            receiver.stop()
            site.cleanup()
        }
        receiver.start()
        Shell.must("dd if=/dev/urandom of='\(site.disks)/r1.img' bs=1M count=4 status=none")
        site.mount()
        // The PKI is not the default /etc/replicafs/pki: only the saved options can find it.
        Shell.must("\"$RFS\" protect r1 --disks-dir '\(site.disks)' --disk r1.img --target \(receiver.url) --pki '\(receiver.pki)' --copy-frequency 1h --network lan")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/r1.img' bs=4k count=16 seek=100 conv=notrunc,fsync status=none")
        let source = Shell.sha256(site.mnt + "/r1.img")
        Shell.must("\"$RFS\" snapshot r1 --wait")
        let plan = """
            name: remote
            target: \(receiver.url)
            mountRoot: fo
            workRoot: work
            networkMapping: {lan: dr-lan}
            groups:
              - name: only
                vms: [{name: r1}]
            """
        try plan.write(toFile: site.root + "/plan.yaml", atomically: true, encoding: .utf8)
        let r = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml'")
        #expect(r.ok, "\(r.stdout)\n\(r.stderr)")
        #expect(Shell.sha256(site.root + "/fo/r1/r1.img") == source)
        #expect(Shell.run("cat '\(site.root)/fo/r1/network.json'").stdout.contains("dr-lan"))
        Shell.must("\"$RFS\" failover cleanup r1")

        // The registry entry gone (a DR host that only holds the store): --pki is needed and used.
        Shell.must("\"$RFS\" unprotect r1 --disks-dir '\(site.disks)'")
        let without = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml'")
        #expect(!without.ok, "a plan with no saved options and no --pki reached the receiver: \(without.stdout)")
        let with = Shell.run("\"$RFS\" plan test-failover '\(site.root)/plan.yaml' --pki '\(receiver.pki)'")
        #expect(with.ok, "\(with.stdout)\n\(with.stderr)")
        #expect(Shell.sha256(site.root + "/fo/r1/r1.img") == source)
        Shell.must("\"$RFS\" failover cleanup r1 --target \(receiver.url) --pki '\(receiver.pki)'")
        site.unmount()
    }

    @Test("the replicator writes the store's vm.json when it seeds the replica")
    func seedingWritesVMMetadata() throws {
        let site = Site("plan-seed")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && truncate -s 4M '\(site.disks)/db1.img'")
        // Protected while no daemon runs; the store's copy is lost before the first seed.
        Shell.must("\"$RFS\" protect db1 --disks-dir '\(site.disks)' --disk db1.img --target '\(store)' --copy-frequency 1h --network prod-lan")
        Shell.must("rm '\(store)/db1/vm.json'")
        site.mount()
        Shell.must("\"$RFS\" snapshot db1 --wait")
        struct Meta: Decodable { var vm: String; var disks: [String]; var networks: [String] }
        let meta = try JSONDecoder().decode(Meta.self, from: Data(Shell.must("cat '\(store)/db1/vm.json'").utf8))
        #expect(meta.vm == "db1" && meta.disks == ["db1.img"] && meta.networks == ["prod-lan"])
        site.unmount()
    }
}
