import ReplicaStore
import ReplicaSystem

/// Failover bookkeeping in the object store: the failover state lives in the catalog, so
/// holding a point against prune and refusing replication are part of the same conditional
/// write as every other change. A store elsewhere keeps no local files: the failing-over host
/// names the working directory (`failover --work-dir`). A marker under `failovers/` lists the
/// failed-over VMs for a restarting host.
extension ObjectStore {
    public func failoverState(_ vm: String) -> FailoverState? { (try? catalogIfAny(vm))?.failover }

    public func failedOverVMs() -> [String] {
        let markers = (try? bucket.list(prefix: ObjectLayout.failovers)) ?? []
        return markers.map { String($0.key.dropFirst(ObjectLayout.failovers.count)) }
            .filter { ProtectedVM.validName($0) && failoverState($0) != nil }.sorted()
    }

    public func beginFailover(vm: String, point selector: PointSelector, kind: FailoverState.Kind, mountpoint: String,
                              sourceDisksDir: String?, workDirectory: String?) throws -> FailoverState {
        try requireVM(vm)
        guard let work = workDirectory else {
            throw ReplicaError("target store \(location) is not on this host: give the failover a working directory (--work-dir)", code: .badRequest)
        }
        let state = try mutate(vm) { c -> FailoverState? in
            if let existing = c.failover {
                throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first", code: .alreadyFailedOver)
            }
            if kind == .test, let resync = c.store.resync, !resync.finished {
                throw ReplicaError("VM \(vm) is being resynchronized: run the drill once the resync has finished")
            }
            let point = try resolve(selector, in: c.store, vm: vm)
            let state = FailoverState(vm: vm, kind: kind, point: point, mountpoint: mountpoint, disks: c.store.disks.map(\.name),
                                      startedNanos: Clock.nowNanos(), sourceDisksDir: sourceDisksDir, workDirectory: work)
            c.failover = state
            return state
        }!
        try putChecked(ObjectLayout.failoverMarker(vm), [])
        return state
    }

    public func saveFailover(_ state: FailoverState) throws {
        try mutate(state.vm) { c -> Bool? in
            c.failover = state
            return true
        }
        try putChecked(ObjectLayout.failoverMarker(state.vm), [])
    }

    public func discardFailover(vm: String) throws {
        try mutate(vm) { c -> Bool? in
            guard c.failover != nil else { return nil }
            c.failover = nil
            return true
        }
        try bucket.delete(ObjectLayout.failoverMarker(vm))
    }

    @discardableResult
    public func commitFailover(vm: String) throws -> FailoverState {
        let state = try mutate(vm) { c -> FailoverState? in
            guard var state = c.failover else { throw ReplicaError("VM \(vm) has no failover to commit", code: .notFailedOver) }
            guard state.kind != .test else { throw ReplicaError("VM \(vm) is in a test failover: it cannot be committed, only cleaned up") }
            guard !state.committed else { throw ReplicaError("the failover of VM \(vm) is already committed") }
            c.store.points.removeAll { $0.id < state.point.id }
            try merge(&c, through: state.point.id)
            state.committed = true
            c.failover = state
            return state
        }!
        try collectGarbage(vm)
        return state
    }
}
