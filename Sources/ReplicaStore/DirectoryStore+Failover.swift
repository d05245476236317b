import Foundation
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Failover bookkeeping in the target store: the failover state beside the disks' writable
/// layers, the commit that makes a point final, and the rebase that makes the replica follow
/// the disks a failback brought home. Design: docs/failover.md.
extension DirectoryStore {
    func failoverDirectory(_ vm: String) -> String { vmDirectory(vm) + "/failover" }
    func failoverStatePath(_ vm: String) -> String { failoverDirectory(vm) + "/state.json" }

    /// The VM's failover in progress, if any.
    public func failoverState(_ vm: String) -> FailoverState? {
        guard let bytes = try? FileSystem.readFile(failoverStatePath(vm)) else { return nil }
        if let state = try? JSONDecoder().decode(FailoverState.self, from: Data(bytes)) { return state }
        // Written before failovers named their working directory: it was this one.
        guard var fields = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
              fields["workDirectory"] == nil else { return nil }
        fields["workDirectory"] = failoverDirectory(vm)
        guard let patched = try? JSONSerialization.data(withJSONObject: fields) else { return nil }
        return try? JSONDecoder().decode(FailoverState.self, from: patched)
    }

    public func saveFailover(_ state: FailoverState) throws {
        let data = try JSONEncoder().encode(state)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(failoverStatePath(state.vm), $0) }
    }

    /// Records a failover of `vm` to the selected point; refuses a VM already failed over.
    /// A planned or unplanned failover stops the store taking replication until failback.
    public func beginFailover(vm: String, point selector: PointSelector, kind: FailoverState.Kind,
                              mountpoint: String, sourceDisksDir: String?, workDirectory: String? = nil) throws -> FailoverState {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", code: .unknownVM) }
        return try withLock(vm, exclusive: true) {
            if let existing = failoverState(vm) {
                throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first", code: .alreadyFailedOver)
            }
            try recoverLocked(vm)
            let catalog = try StoreCatalog.load(catalogPath(vm))
            if kind == .test, let resync = catalog.resync, !resync.finished {
                throw ReplicaError("VM \(vm) is being resynchronized: run the drill once the resync has finished")
            }
            let point = try resolve(selector, in: catalog, vm: vm)
            let state = FailoverState(vm: vm, kind: kind, point: point, mountpoint: mountpoint,
                                      disks: catalog.disks.map(\.name), startedNanos: Clock.nowNanos(),
                                      sourceDisksDir: sourceDisksDir, workDirectory: workDirectory ?? failoverDirectory(vm))
            try FileSystem.mkdirs(failoverDirectory(vm))
            try saveFailover(state)
            return state
        }
    }

    /// Discards a failover: its writable layers and its state. The store is as before it.
    public func discardFailover(vm: String) throws {
        let dir = failoverDirectory(vm)
        guard FileSystem.isDirectory(dir) else { return }
        try withLock(vm, exclusive: true) { try removeTree(dir) }
    }

    /// Makes an unplanned or planned failover's point final: points older than it are dropped
    /// and the base is brought to it (the failed-over disks keep reading the same bytes: a merge
    /// only rewrites base bytes their redo logs cover). Later points stay.
    @discardableResult
    public func commitFailover(vm: String) throws -> FailoverState {
        guard var state = failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to commit", code: .notFailedOver) }
        guard state.kind != .test else { throw ReplicaError("VM \(vm) is in a test failover: it cannot be committed, only cleaned up") }
        guard !state.committed else { throw ReplicaError("the failover of VM \(vm) is already committed") }
        try withLock(vm, exclusive: true) {
            var catalog = try StoreCatalog.load(catalogPath(vm))
            catalog.points.removeAll { $0.id < state.point.id }
            try catalog.save(catalogPath(vm))
            try mergeLocked(vm, through: state.point.id)
            state.committed = true
            try saveFailover(state)
        }
        return state
    }

    /// After a failback: commits `sources` (disk name to image path, at rest) as a new
    /// crash-consistent point whose redo log holds the blocks where they differ from the
    /// latest point (SHA-256 per block), so every earlier point stays exportable. The chains
    /// restart with the next logs the primary ships. Returns the point and the bytes stored.
    public func rebase(vm: String, sources: [String: String], blockSize: Int = 1 << 20) throws -> (RecoveryPoint, Int64) {
        try withLock(vm, exclusive: true) {
            try recoverLocked(vm)
            var catalog = try StoreCatalog.load(catalogPath(vm))
            if let resync = catalog.resync {
                guard resync.finished else { throw ReplicaError("VM \(vm): a resync is in progress: rebase after it") }
                // The rebase compares with the latest point and carries the whole difference:
                // a finished resync's blocks are superseded.
                try removeTree(resyncDirectory(vm, resync.pointID))
                catalog.resync = nil
            }
            let id = catalog.nextPointID
            let pending = pointDirectory(vm, id, pending: true)
            if FileSystem.exists(pending) { try removeTree(pending) }
            try FileSystem.mkdirs(pending)
            let sync = BlockSync(blockSize: blockSize)
            var written: Int64 = 0
            for (i, disk) in catalog.disks.enumerated() {
                guard let source = sources[disk.name] else { throw ReplicaError("rebase of VM \(vm): no source for disk \(disk.name)") }
                let view = try PointView(store: self, vm: vm, disk: disk.name, pointID: nil, locked: true)
                let ranges = try sync.diff(source, view)
                let size = Int64(try FileSystem.stat(source).st_size)
                catalog.disks[i].chain = nil
                catalog.disks[i].nextLSN = nil
                catalog.disks[i].size = size
                guard !ranges.isEmpty || size != view.size else { continue }
                written += try DirectLogWriter.writeRedo(ranges, from: source, size: size,
                                              to: pending + "/" + Self.redoLogName(disk.name, 1), disk: disk.name, pointID: id)
            }
            try FileSystem.fsyncDirectory(pending)
            var sizes: [String: Int64] = [:]
            for disk in catalog.disks { sizes[disk.name] = try latestSize(vm, disk) }
            let point = RecoveryPoint(id: id, timeNanos: Clock.nowNanos(), consistency: .crash, cut: 0, diskSizes: sizes)
            catalog.points.append(point)
            catalog.nextPointID = id + 1
            try catalog.save(catalogPath(vm))
            guard rename(pending, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", pending) }
            return (point, written)
        }
    }
}
