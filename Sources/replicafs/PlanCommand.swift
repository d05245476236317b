import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaStore
import ReplicaSystem
import ReplicaRecovery
#if canImport(Glibc)
import Glibc
#endif

/// `replicafs plan failover|test-failover|failback <plan-file>`: runs a recovery plan (docs/recovery-plans.md).
/// Each VM's step is the same library call (`FailoverCoordinator`) the `failover` and
/// `failback` commands make, in this process, so a plan does exactly what the operator would
/// do by hand, VM by VM, and reports each step's own error.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Run a recovery plan: groups in order, the VMs of a group in parallel, stop at the first failure.",
        discussion: "Before each VM's failover, its source networks (recorded in the store by protect) are mapped through the plan's networkMapping into a network.json shown beside the VM's failed-over disks. Exits non-zero when a step failed; the report names it and the groups that did not start.")

    enum Operation: String, ExpressibleByArgument, CaseIterable {
        case failover
        case testFailover = "test-failover"
        case failback
    }

    @Argument(help: "failover, test-failover or failback.") var operation: Operation
    @Argument(help: "The plan file (YAML).") var planFile: String
    @Flag(help: "With failover: a planned failover (the sources stop writing and ship everything first).") var planned = false
    @Option(help: "With failback: minimize-downtime or full-download.") var mode: String?
    @Option(help: "Seconds a pre or post command may run before it is killed.") var hookTimeout: Double = 600
    @Flag(help: "Print the report as JSON (progress lines then go to stderr).") var json = false
    @Option(help: "PKI directory for the plan's replicafs:// targets (default: the one each VM was protected or failed over with on this host, else /etc/replicafs/pki).")
    var pki: String?
    @OptionGroup var objectStore: ObjectStoreAccessOptions

    /// How to open a VM's store: the options its failover recorded on this host, else the ones
    /// it was protected with here, with `--pki` and the access flags given on top.
    static func storeOptions(vm: String, target: String, pki: String?, access: TargetOptions) -> TargetOptions {
        var options = TargetOptions()
        if let entry = VMRegistry().lookup(vm), entry.target == target {
            if let recorded = entry.failover?.options {
                options = recorded
            } else if let dir = entry.disksDir, let saved = ProtectedVM.all(disksDir: dir).first(where: { $0.name == vm })?.targetOptions {
                options = saved
            }
        }
        if let pki { options.pki = (try? FileSystem.realPath(pki)) ?? pki }
        return options.overridden(by: access)
    }

    func run() throws {
        if planned && operation != .failover { throw ReplicaError("--planned goes with plan failover only") }
        if mode != nil && operation != .failback { throw ReplicaError("--mode goes with plan failback only") }
        guard let failbackMode = FailoverCoordinator.FailbackMode(rawValue: mode ?? "minimize-downtime") else {
            throw ReplicaError("bad failback mode '\(mode ?? "")': use minimize-downtime or full-download", code: .badRequest)
        }
        guard hookTimeout > 0 else { throw ReplicaError("--hook-timeout must be positive") }
        let plan = try RecoveryPlan.load(planFile)
        var access = TargetOptions()
        try objectStore.apply(to: &access)
        let pki = pki
        let steps = PlanSteps(mounts: { ProcessFailoverMounts(options: $0) },
                              options: { [access] vm in Self.storeOptions(vm: vm.name, target: vm.target, pki: pki, access: access) })
        let networks = operation == .failback ? [:] : try steps.mapNetworks(plan)
        let op = operation
        let json = json
        let runner = PlanRunner(plan: plan, operation: operation.rawValue, hookTimeout: hookTimeout, progress: { line in
            let text = Data((line + "\n").utf8)
            if json { FileHandle.standardError.write(text) } else { FileHandle.standardOutput.write(text) }
        }) { vm in
            switch op {
            case .failover, .testFailover:
                try steps.failover(vm, kind: op == .testFailover ? .test : planned ? .planned : .unplanned, networks: networks[vm.name])
            case .failback:
                // As `replicafs failback`: a VM the plan gives no disksDir goes back to where
                // its failover came from, else to the disks directory this host registered.
                var vm = vm
                if vm.disksDir == nil { vm.disksDir = registeredHome(vm.name, target: vm.target) }
                try steps.failback(vm, mode: failbackMode)
            }
        }
        let report = runner.run()
        if json { print(try report.json()) } else { print(report.text) }
        guard report.ok else {
            var what: [String] = []
            if !report.failedVMs.isEmpty { what.append("VM\(report.failedVMs.count == 1 ? "" : "s") \(report.failedVMs.joined(separator: ", ")) failed") }
            if !report.failedHooks.isEmpty { what.append("hook\(report.failedHooks.count == 1 ? "" : "s") \(report.failedHooks.joined(separator: ", ")) failed") }
            let skipped = report.notStarted.isEmpty ? "" : "; groups not started: " + report.notStarted.joined(separator: ", ")
            throw ReplicaError("plan \(plan.name): \(operation.rawValue) stopped: \(what.joined(separator: ", "))\(skipped)")
        }
    }
}
