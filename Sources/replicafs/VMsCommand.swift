import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaStore
import ReplicaSystem

/// `replicafs vms`: the VMs this host knows (its registry: protected here or failed over
/// here), or with `--target` the VMs a store holds, each with its policy.
struct VMsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vms", abstract: "List the VMs this host knows (or a store holds), with their policy.")
    @Option(help: "List the VMs of this target store instead of this host's.") var target: String?
    @OptionGroup var output: OutputOptions

    struct Row: Encodable {
        var vm: String
        /// The primary's disks directory on this host (none for a VM known from its store only).
        var disksDir: String?
        var target: String
        /// The named policy the VM follows, if any.
        var policyName: String?
        var copyFrequency: String?
        var retention: String?
        var appConsistentEvery: String?
        var compress: Bool?
        var maxBandwidth: String?
        /// "unplanned failover to point 3 mounted on /mnt/x", when failed over.
        var failover: String?
    }

    func run() throws {
        let rows = try target.map(storeRows) ?? localRows()
        if output.json { return try printJSON(rows) }
        if rows.isEmpty {
            print(target.map { "no VMs in \($0)" } ?? "no VMs registered on this host: `replicafs protect <vm> --disks-dir <dir> --disk <img> --target <store>` protects one")
        }
        for r in rows {
            var line = "\(r.vm)\t\(r.disksDir ?? "-") -> \(r.target)"
            if let f = r.copyFrequency { line += "\tevery \(f), keep \(r.retention ?? "?"), app-consistent \(r.appConsistentEvery ?? "off")\(r.compress == true ? ", compressed" : "")" }
            if let b = r.maxBandwidth { line += ", max \(b)" }
            if let p = r.policyName { line += "\tpolicy \(p)" }
            if let f = r.failover { line += "\tFAILED OVER: \(f)" }
            print(line)
        }
    }

    static func row(vm: String, disksDir: String?, target: String, policyName: String?, policy: ReplicationPolicy?, failover: String?) -> Row {
        Row(vm: vm, disksDir: disksDir, target: target, policyName: policyName,
            copyFrequency: policy.map { ReplicationPolicy.describe($0.copyFrequency) }, retention: policy.map { ReplicationPolicy.describe($0.retention) },
            appConsistentEvery: policy?.appConsistentEvery.map(ReplicationPolicy.describe), compress: policy?.compress,
            maxBandwidth: policy?.maxBandwidth, failover: failover)
    }

    func localRows() -> [Row] {
        VMRegistry().all().map { entry in
            let protected = entry.disksDir.flatMap { dir in ProtectedVM.all(disksDir: dir).first { $0.name == entry.vm } }
            let store = try? openTargetStore(entry.target, options: protected?.targetOptions ?? TargetOptions())
            let failover = store?.failoverState(entry.vm)?.summary
                ?? entry.failover.map { "\($0.kind) failover on \($0.mountpoint) (store not reachable)" }
            return Self.row(vm: entry.vm, disksDir: entry.disksDir, target: entry.target, policyName: entry.policy,
                            policy: protected?.policy ?? ((try? store?.metadata(vm: entry.vm)) ?? nil)?.policy, failover: failover)
        }
    }

    func storeRows(_ target: String) throws -> [Row] {
        let store = try openTargetStore(target)
        let registry = VMRegistry()
        return store.vmNames().map { vm in
            let local = registry.lookup(vm).flatMap { $0.target == store.location ? $0 : nil }
            return Self.row(vm: vm, disksDir: local?.disksDir, target: store.location, policyName: local?.policy,
                            policy: ((try? store.metadata(vm: vm)) ?? nil)?.policy, failover: store.failoverState(vm)?.summary)
        }
    }
}
