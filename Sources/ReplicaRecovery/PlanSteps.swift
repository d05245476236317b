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
    /// The failover mounts for a VM whose store opens with these options (the failover daemon
    /// opens it the same way).
    public let mounts: @Sendable (TargetOptions) -> any FailoverMounts
    /// How to open a VM's store: the PKI and object-store access it was protected with, or
    /// the plan command's own (an encrypted or `replicafs://` store needs them).
    public let options: @Sendable (RecoveryPlan.VM) -> TargetOptions
    let registry: MountRegistry

    public init(mounts: @escaping @Sendable (TargetOptions) -> any FailoverMounts,
                options: @escaping @Sendable (RecoveryPlan.VM) -> TargetOptions = { _ in TargetOptions() },
                registry: MountRegistry = MountRegistry()) {
        self.mounts = mounts
        self.options = options
        self.registry = registry
    }

    /// A coordinator on `vm`'s store, opened with the VM's options, which it records with a
    /// failover so `remount` and `failback` open the store the same way.
    func coordinator(_ vm: RecoveryPlan.VM) throws -> FailoverCoordinator {
        let options = options(vm)
        let coordinator = FailoverCoordinator(store: try openTargetStore(vm.target, options: options), mounts: mounts(options), registry: registry)
        coordinator.storeOptions = options
        return coordinator
    }

    /// Each VM's mapped networks, from the VM's metadata in its store; nil for a VM the store
    /// has no metadata of (its failover will tell what is wrong). Every network must be mapped
    /// before anything starts.
    public func mapNetworks(_ plan: RecoveryPlan) throws -> [String: FailoverNetworks] {
        var out: [String: FailoverNetworks] = [:]
        for vm in plan.allVMs {
            guard let store = try? openTargetStore(vm.target, options: options(vm)), let meta = try store.metadata(vm: vm.name) else { continue }
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
            _ = try coordinator(vm).failover(vm: vm.name, point: vm.point, kind: kind, mountpoint: vm.mount,
                                         disksDir: kind == .planned ? vm.disksDir : nil, networks: networks, workDirectory: vm.workDir)
        } catch {
            for dir in createdDirs {
                if rmdir(dir) != 0 { break }
            }
            throw error
        }
    }

    /// Fails the VM back to its original site (or the plan's `disksDir`).
    public func failback(_ vm: RecoveryPlan.VM, mode: FailoverCoordinator.FailbackMode) throws {
        _ = try coordinator(vm).failback(vm: vm.name, mode: mode, to: vm.disksDir)
    }
}
