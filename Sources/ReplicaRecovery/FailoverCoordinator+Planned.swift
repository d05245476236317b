import ReplicaStore
import ReplicaSystem

extension FailoverCoordinator {
    /// The primary's half of a planned failover to another host: stops the source (its running
    /// mount ships what it logged, then unmounts; or the stopped disks in `disksDir`) and
    /// commits its last sealed logs as the final point, over the network when the store is a
    /// receiver. The secondary then fails over to that point against its local store; nothing
    /// is mounted here. Returns the source's disks directory and the final point.
    public func stopAndShip(vm: String, disksDir: String?) throws -> (source: String, point: RecoveryPoint) {
        try store.requireVM(vm)
        if let existing = store.failoverState(vm) {
            throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first", code: .alreadyFailedOver)
        }
        let source = try stopSource(vm: vm, given: try disksDir.map { try FileSystem.realPath($0) })
        do {
            let point = try shipFinalLogs(vm: vm, disksDir: source)
            FailoverEvents.record(nil, vm: vm, .failover, level: .warning, "planned failover: source \(source) stopped, final point \(point.id) shipped to \(store.location)", point: point.id, disksDir: source)
            return (source, point)
        } catch {
            throw ReplicaError("planned failover: the source at \(source) is stopped but its last changes could not be shipped: \(error); mount it again to resume protection", code: .stepFailed)
        }
    }
}
