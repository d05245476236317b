import ReplicaControl
import ReplicaEngine
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A recovery plan's per-VM steps (docs/recovery-plans.md): the same `FailoverCoordinator`
/// calls the `failover` and `failback` commands make, run in the plan's process, so a failed
/// step reports its own `ReplicaError` (message and code) rather than a subprocess's last line.
public struct PlanSteps: Sendable {
    public let mounts: any FailoverMounts
    let registry: MountRegistry

    public init(mounts: any FailoverMounts, registry: MountRegistry = MountRegistry()) {
        self.mounts = mounts
        self.registry = registry
    }

    /// Each VM's mapped networks, from the VM's metadata in its store; nil for a VM the store
    /// has no metadata of (its failover will tell what is wrong). Every network must be mapped
    /// before anything starts.
    public static func mapNetworks(_ plan: RecoveryPlan) throws -> [String: FailoverNetworks] {
        var out: [String: FailoverNetworks] = [:]
        for vm in plan.allVMs {
            guard let store = try? openTargetStore(vm.target), let meta = try store.metadata(vm: vm.name) else { continue }
            out[vm.name] = try FailoverNetworks(vm: vm.name, plan: plan.name, sourceNetworks: meta.networks, mapping: plan.networkMapping)
        }
        return out
    }

    /// Creates the VM's mountpoint if needed and fails the VM over with its mapped networks;
    /// on a failure takes back the directories it created (the coordinator leaves nothing else).
    public func failover(_ vm: RecoveryPlan.VM, kind: FailoverState.Kind, networks: FailoverNetworks?) throws {
        // The mountpoint and any of its parents that are missing; taken away again on failure.
        var createdDirs: [String] = []
        var dir = vm.mount
        while !dir.isEmpty, dir != "/", !FileSystem.exists(dir) {
            createdDirs.append(dir)
            dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        }
        if !createdDirs.isEmpty { try FileSystem.mkdirs(vm.mount) }
        do {
            let coordinator = FailoverCoordinator(store: try openTargetStore(vm.target), mounts: mounts, registry: registry)
            _ = try coordinator.failover(vm: vm.name, point: vm.point, kind: kind, mountpoint: vm.mount,
                                         disksDir: kind == .planned ? vm.disksDir : nil, networks: networks)
        } catch {
            for dir in createdDirs {
                if rmdir(dir) != 0 { break }
            }
            throw error
        }
    }

    /// Fails the VM back to its original site (or the plan's `disksDir`).
    public func failback(_ vm: RecoveryPlan.VM, mode: FailoverCoordinator.FailbackMode) throws {
        let coordinator = FailoverCoordinator(store: try openTargetStore(vm.target), mounts: mounts, registry: registry)
        _ = try coordinator.failback(vm: vm.name, mode: mode, to: vm.disksDir)
    }
}
