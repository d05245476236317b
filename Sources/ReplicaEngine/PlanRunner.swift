import Foundation
import Synchronization
import ReplicaSystem

/// Runs a recovery plan: the groups in order; in each, the pre command, then all the group's
/// VMs at once (one thread each), then the post command once every VM succeeded. The first
/// failure (a VM or a hook) stops the plan: VMs of the same group already running are let
/// finish (a half-done failover is worse than a finished one), the post command and the later
/// groups do not start. The per-VM action is a closure, so the core can be tested with plain
/// shell commands and the CLI can run `replicafs failover` for real.
public final class PlanRunner: Sendable {
    /// Does the operation for one VM; throwing marks it failed with the error's text.
    public typealias Action = @Sendable (RecoveryPlan.VM) throws -> Void

    public let plan: RecoveryPlan
    public let operation: String
    let hookTimeout: Double
    let action: Action
    let progress: @Sendable (String) -> Void
    private let lock = Lock()

    /// `progress` receives one line as each hook or VM starts and ends (from several threads; calls are serialized).
    public init(plan: RecoveryPlan, operation: String, hookTimeout: Double = 600,
                progress: @escaping @Sendable (String) -> Void = { _ in }, action: @escaping Action) {
        self.plan = plan
        self.operation = operation
        self.hookTimeout = hookTimeout
        self.progress = progress
        self.action = action
    }

    public func run() -> PlanReport {
        let start = Date()
        var results: [PlanReport.GroupResult] = []
        var stopped = false
        for group in plan.groups {
            if stopped {
                results.append(PlanReport.GroupResult(
                    name: group.name, outcome: .skipped,
                    pre: group.pre.map { PlanReport.Hook(command: $0, outcome: .skipped, seconds: 0) },
                    vms: group.vms.map { PlanReport.VMResult(name: $0.name, outcome: .skipped, seconds: 0) },
                    post: group.post.map { PlanReport.Hook(command: $0, outcome: .skipped, seconds: 0) }, seconds: 0))
                continue
            }
            let result = runGroup(group)
            results.append(result)
            stopped = result.outcome != .ok
        }
        return PlanReport(plan: plan.name, operation: operation, seconds: Date().timeIntervalSince(start), groups: results)
    }

    private func say(_ line: String) { lock.withLock { progress(line) } }

    private func runGroup(_ group: RecoveryPlan.Group) -> PlanReport.GroupResult {
        let start = Date()
        say("group \(group.name): starting (\(group.vms.count) VM\(group.vms.count == 1 ? "" : "s"))")
        var result = PlanReport.GroupResult(name: group.name, outcome: .ok, pre: nil, vms: [], post: nil, seconds: 0)
        if let pre = group.pre {
            let hook = runHook(pre, group: group.name, kind: "pre")
            result.pre = hook
            if hook.outcome == .failed {
                result.outcome = .failed
                result.vms = group.vms.map { PlanReport.VMResult(name: $0.name, outcome: .skipped, seconds: 0) }
                result.post = group.post.map { PlanReport.Hook(command: $0, outcome: .skipped, seconds: 0) }
                result.seconds = Date().timeIntervalSince(start)
                say("group \(group.name): FAILED")
                return result
            }
        }
        result.vms = runVMs(group.vms)
        if result.vms.contains(where: { $0.outcome != .ok }) {
            result.outcome = .failed
            result.post = group.post.map { PlanReport.Hook(command: $0, outcome: .skipped, seconds: 0) }
        } else if let post = group.post {
            let hook = runHook(post, group: group.name, kind: "post")
            result.post = hook
            if hook.outcome == .failed { result.outcome = .failed }
        }
        result.seconds = Date().timeIntervalSince(start)
        say("group \(group.name): \(result.outcome == .ok ? "ok" : "FAILED") in \(String(format: "%.1f", result.seconds)) s")
        return result
    }

    /// All VMs of a group at once, one thread each; returns their results in the plan's order.
    private func runVMs(_ vms: [RecoveryPlan.VM]) -> [PlanReport.VMResult] {
        let done = DispatchGroup()
        let results = Slots(count: vms.count)
        for (i, vm) in vms.enumerated() {
            done.enter()
            let thread = Thread { [self] in
                say("\(vm.name): \(operation) starting")
                let start = Date()
                var r = PlanReport.VMResult(name: vm.name, outcome: .ok, seconds: 0)
                do {
                    try action(vm)
                } catch {
                    r.outcome = .failed
                    r.error = "\(error)"
                    r.errorCode = (error as? ReplicaError)?.code ?? .unspecified
                }
                r.seconds = Date().timeIntervalSince(start)
                say("\(vm.name): \(operation) \(r.outcome == .ok ? "ok" : "FAILED: " + (r.error ?? "")) (\(String(format: "%.1f", r.seconds)) s)")
                results.set(i, r)
                done.leave()
            }
            thread.name = "replicafs-plan-\(vm.name)"
            thread.start()
        }
        done.wait()
        return results.all
    }

    private func runHook(_ command: String, group: String, kind: String) -> PlanReport.Hook {
        say("group \(group): \(kind) command: \(command)")
        let start = Date()
        var hook = PlanReport.Hook(command: command, outcome: .ok, seconds: 0)
        do {
            let r = try CapturedCommand.shell(command, timeout: hookTimeout)
            if !r.ok {
                hook.outcome = .failed
                hook.error = "\(kind) command exited with status \(r.status)" + (r.errorLine.map { ": " + $0 } ?? "")
            }
        } catch {
            hook.outcome = .failed
            hook.error = "\(kind) command: \(error)"
        }
        hook.seconds = Date().timeIntervalSince(start)
        if let error = hook.error { say("group \(group): \(error)") }
        return hook
    }

    /// Each VM thread's result, filled in as the threads end.
    private final class Slots: Sendable {
        private let values: Mutex<[PlanReport.VMResult?]>
        init(count: Int) { values = Mutex(Array(repeating: nil, count: count)) }
        func set(_ i: Int, _ value: PlanReport.VMResult) { values.withLock { $0[i] = value } }
        var all: [PlanReport.VMResult] { values.withLock { $0.map { $0! } } }
    }
}
