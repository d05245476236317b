import ArgumentParser
import Foundation
import ReplicaEngine
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// `replicafs plan failover|test-failover|failback <plan-file>`: runs a recovery plan (docs/recovery-plans.md).
/// Each VM's step is this same binary run as a subprocess (`failover ...` or `failback ...`),
/// so a plan does exactly what the operator would do by hand, VM by VM.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Run a recovery plan: groups in order, the VMs of a group in parallel, stop at the first failure.",
        discussion: "Before each VM's failover, its source networks (from <store>/<vm>/vm.json) are mapped through the plan's networkMapping into <store>/<vm>/failover/network.json. Exits non-zero when a step failed; the report names it and the groups that did not start.")

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

    func run() throws {
        if planned && operation != .failover { throw ReplicaError("--planned goes with plan failover only") }
        if mode != nil && operation != .failback { throw ReplicaError("--mode goes with plan failback only") }
        let failbackMode = mode ?? "minimize-downtime"
        guard ["minimize-downtime", "full-download"].contains(failbackMode) else {
            throw ReplicaError("bad failback mode '\(failbackMode)': use minimize-downtime or full-download")
        }
        guard hookTimeout > 0 else { throw ReplicaError("--hook-timeout must be positive") }
        let plan = try RecoveryPlan.load(planFile)
        let networks = operation == .failback ? [:] : try Self.mapNetworks(plan)
        let exe = try FileSystem.realPath("/proc/self/exe")
        let op = operation
        let json = json
        let runner = PlanRunner(plan: plan, operation: operation.rawValue, hookTimeout: hookTimeout, progress: { line in
            let text = Data((line + "\n").utf8)
            if json { FileHandle.standardError.write(text) } else { FileHandle.standardOutput.write(text) }
        }) { vm in
            switch op {
            case .failover, .testFailover:
                try Self.failover(vm, exe: exe, networks: networks[vm.name], test: op == .testFailover, planned: planned)
            case .failback:
                var argv = [exe, "failback", vm.name, "--target", vm.target, "--mode", failbackMode]
                if let dir = vm.disksDir { argv += ["--to", dir] }
                try Self.step(argv)
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

    /// Each VM's mapped networks, from the store's vm.json; nil for a VM the store has no
    /// metadata of (its failover will tell what is wrong). Every network must be mapped
    /// before anything starts.
    static func mapNetworks(_ plan: RecoveryPlan) throws -> [String: FailoverNetworks] {
        var out: [String: FailoverNetworks] = [:]
        for vm in plan.allVMs {
            guard let meta = try VMMetadata.load(store: vm.target, vm: vm.name) else { continue }
            out[vm.name] = try FailoverNetworks(vm: vm.name, plan: plan.name, sourceNetworks: meta.networks, mapping: plan.networkMapping)
        }
        return out
    }

    /// Writes the VM's network.json, creates its mountpoint if needed, runs `failover`; on a
    /// failure takes back what it created, so a failed step leaves no trace.
    static func failover(_ vm: RecoveryPlan.VM, exe: String, networks: FailoverNetworks?, test: Bool, planned: Bool) throws {
        let failoverDir = vm.target + "/" + vm.name + "/failover"
        var wroteNetworks = false, createdFailoverDir = false
        // Only for a VM the store holds and that is not failed over already (then `failover`
        // refuses, and its state must stay as it is).
        let busy = ((try? FileSystem.list(failoverDir)) ?? []).contains { $0 != "network.json" }
        if let networks, FileSystem.exists(vm.target + "/" + vm.name + "/catalog.json"), !busy {
            createdFailoverDir = try networks.save(store: vm.target)
            wroteNetworks = true
        }
        // The mountpoint and any of its parents that are missing; taken away again on failure.
        var createdDirs: [String] = []
        var dir = vm.mount
        while !dir.isEmpty, dir != "/", !FileSystem.exists(dir) {
            createdDirs.append(dir)
            dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        }
        if !createdDirs.isEmpty { try FileSystem.mkdirs(vm.mount) }
        var argv = [exe, "failover", vm.name, "--target", vm.target, "--point", vm.point, "--mount", vm.mount]
        if test { argv.append("--test") }
        if planned {
            argv.append("--planned")
            if let dir = vm.disksDir { argv += ["--disks-dir", dir] }
        }
        do {
            try step(argv)
        } catch {
            if wroteNetworks { _ = unlink(FailoverNetworks.path(store: vm.target, vm: vm.name)) }
            if createdFailoverDir { _ = rmdir(failoverDir) }
            for dir in createdDirs {
                if rmdir(dir) != 0 { break }
            }
            throw error
        }
    }

    /// Runs one replicafs step; a failure's error is the step's own last line.
    static func step(_ argv: [String]) throws {
        let r = try CapturedCommand.run(argv, timeout: nil)
        guard r.ok else {
            throw ReplicaError(r.errorLine ?? "\(argv[1]) exited with status \(r.status)")
        }
    }
}
