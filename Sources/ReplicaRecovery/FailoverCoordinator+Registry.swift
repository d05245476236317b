import ReplicaControl
import ReplicaStore
import ReplicaSystem

extension FailoverCoordinator {
    /// Records a failover started (or remounted) on this host, so `failover cleanup|commit|remount
    /// <vm>`, `failback <vm>` and `status <vm>` find it without `--target`. Best effort: the
    /// failover itself is recorded in the store, which `--target` always reaches.
    func registerFailover(_ state: FailoverState) {
        do {
            try VMRegistry().update(state.vm, disksDir: nil, target: store.location) {
                $0.failover = .init(kind: state.kind.rawValue, mountpoint: state.mountpoint,
                                    options: storeOptions == TargetOptions() ? nil : storeOptions)
            }
        } catch {
            DaemonLog.logger.warning("cannot record the failover of \(state.vm) in the local registry: \(error)")
        }
    }

    /// Forgets the failover in the local registry (cleaned up or failed back to `disksDir`).
    func unregisterFailover(_ vm: String, failedBackTo disksDir: String? = nil) {
        let registry = VMRegistry()
        guard registry.lookup(vm) != nil || disksDir != nil else { return }
        do {
            try registry.update(vm, disksDir: disksDir, target: store.location) { $0.failover = nil }
        } catch {
            DaemonLog.logger.warning("cannot update VM \(vm) in the local registry: \(error)")
        }
    }
}
