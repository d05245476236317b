import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Failover bookkeeping in the target store: the failover state beside the disks' writable
/// layers, the commit that makes a point final, and the rebase that makes the replica follow
/// the disks a failback brought home. Design: docs/failover.md.
extension TargetStore {
    public func failoverDirectory(_ vm: String) -> String { vmDirectory(vm) + "/failover" }
    func failoverStatePath(_ vm: String) -> String { failoverDirectory(vm) + "/state.json" }

    /// The VM's failover in progress, if any.
    public func failoverState(_ vm: String) -> FailoverState? {
        guard let bytes = try? FileSystem.readFile(failoverStatePath(vm)) else { return nil }
        return try? JSONDecoder().decode(FailoverState.self, from: Data(bytes))
    }

    public func saveFailover(_ state: FailoverState) throws {
        let data = try JSONEncoder().encode(state)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(failoverStatePath(state.vm), $0) }
    }

    /// Records a failover of `vm` to the selected point; refuses a VM already failed over.
    /// A planned or unplanned failover stops the store taking replication until failback.
    public func beginFailover(vm: String, point selector: PointSelector, kind: FailoverState.Kind,
                              mountpoint: String, sourceDisksDir: String?) throws -> FailoverState {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)") }
        return try withLock(vm, exclusive: true) {
            if let existing = failoverState(vm) {
                throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first")
            }
            try recoverLocked(vm)
            let catalog = try StoreCatalog.load(catalogPath(vm))
            if kind == .test, let resync = catalog.resync, !resync.finished {
                throw ReplicaError("VM \(vm) is being resynchronized: run the drill once the resync has finished")
            }
            let point = try resolve(selector, in: catalog, vm: vm)
            let state = FailoverState(vm: vm, kind: kind, point: point, mountpoint: mountpoint,
                                      disks: catalog.disks.map(\.name), startedNanos: Clock.nowNanos(),
                                      sourceDisksDir: sourceDisksDir)
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
    /// (the later ones stay: the failed-over disks are read through their undo logs).
    @discardableResult
    public func commitFailover(vm: String) throws -> FailoverState {
        guard var state = failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to commit") }
        guard state.kind != .test else { throw ReplicaError("VM \(vm) is in a test failover: it cannot be committed, only cleaned up") }
        guard !state.committed else { throw ReplicaError("the failover of VM \(vm) is already committed") }
        try withLock(vm, exclusive: true) {
            var catalog = try StoreCatalog.load(catalogPath(vm))
            catalog.points.removeAll { $0.id < state.point.id }
            try catalog.save(catalogPath(vm))
            for name in try FileSystem.list(vmDirectory(vm) + "/points") {
                guard let id = Int(name.prefix(8)), id <= state.point.id, !name.hasSuffix(".pending") else { continue }
                try removeTree(vmDirectory(vm) + "/points/" + name)
            }
            state.committed = true
            try saveFailover(state)
        }
        return state
    }

    /// Commits every change log a stopped source left in `disksDir` for the VM's disks as one
    /// crash-consistent point (all must be sealed: a clean unmount seals them), then deletes
    /// them there. What a planned failover ships after stopping the source's writes.
    public func shipFinalLogs(vm: String, disksDir: String) throws -> RecoveryPoint {
        let disks = try catalog(vm).disks.map(\.name)
        var logs: [String: [String]] = [:]
        for disk in disks {
            let found = try Self.logs(in: disksDir, of: [disk])
            if !found.isEmpty { logs[disk] = found }
        }
        let point = try commit(vm: vm, logs: logs, consistency: .crash, cut: 0)
        for path in logs.values.joined() { try FileSystem.remove(path) }
        return point
    }

    /// Every change log in `disksDir` of the given images.
    public static func logs(in disksDir: String, of images: [String]) throws -> [String] {
        try FileSystem.list(disksDir).filter { name in LogName.parse(name).map { images.contains($0.image) } ?? false }
            .sorted().map { disksDir + "/" + $0 }
    }

    /// After a failback: makes the replica equal `sources` (disk name to image path, at rest),
    /// saving the bytes it overwrites as undo so every earlier point stays exportable, and
    /// commits that state as a new crash-consistent point. The chains restart with the next
    /// logs the primary ships. Returns the point and the bytes written into the replica.
    public func rebase(vm: String, sources: [String: String], blockSize: Int = 1 << 20) throws -> (RecoveryPoint, Int64) {
        try withLock(vm, exclusive: true) {
            try recoverLocked(vm)
            var catalog = try StoreCatalog.load(catalogPath(vm))
            if let resync = catalog.resync {
                guard resync.finished else { throw ReplicaError("VM \(vm): a resync is in progress: rebase after it") }
                // A finished resync's undo (`<id>.resync`) belongs to the point this rebase commits.
                catalog.resync = nil
            }
            let id = catalog.nextPointID
            let pending = pointDirectory(vm, id, pending: true)
            try FileSystem.mkdirs(pending)
            let sync = BlockSync(blockSize: blockSize)
            var plans: [(disk: String, ranges: [Range<Int64>])] = []
            for (i, disk) in catalog.disks.enumerated() {
                guard let source = sources[disk.name] else { throw ReplicaError("rebase of VM \(vm): no source for disk \(disk.name)") }
                let ranges = try sync.diff(source, replicaPath(vm, disk.name))
                plans.append((disk.name, ranges))
                catalog.disks[i].chain = nil
                catalog.disks[i].nextLSN = nil
                var set = RangeSet()
                for r in ranges { set.insert(UInt64(r.lowerBound)..<UInt64(r.upperBound)) }
                // Undo first, durable before the replica changes (as a commit does).
                try writeUndo(replica: replicaPath(vm, disk.name), ranges: set,
                              to: pending + "/" + disk.name + ".undo.hrl", disk: disk.name, pointID: UInt64(id))
            }
            try FileSystem.fsyncDirectory(pending)
            var written: Int64 = 0
            for plan in plans {
                written += try Self.copyRanges(plan.ranges, from: sources[plan.disk]!, to: replicaPath(vm, plan.disk))
            }
            var sizes: [String: Int64] = [:]
            for disk in catalog.disks { sizes[disk.name] = Int64(try FileSystem.stat(replicaPath(vm, disk.name)).st_size) }
            let point = RecoveryPoint(id: id, timeNanos: Clock.nowNanos(), consistency: .crash, cut: 0, diskSizes: sizes)
            catalog.points.append(point)
            catalog.nextPointID = id + 1
            try catalog.save(catalogPath(vm))
            guard rename(pending, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", pending) }
            return (point, written)
        }
    }

    /// Copies `ranges` of `source` into `target`, gives it the source's size, and syncs it.
    static func copyRanges(_ ranges: [Range<Int64>], from source: String, to target: String) throws -> Int64 {
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let dst = try FileDescriptor.open(target, O_RDWR)
        defer { dst.close() }
        let size = try src.size()
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var written: Int64 = 0
        for r in ranges {
            var at = r.lowerBound
            let end = min(r.upperBound, size)
            while at < end {
                let got = try src.pread(into: buffer, count: Int(min(Int64(chunk), end - at)), offset: at)
                guard got > 0 else { break }
                try dst.pwrite(buffer, count: got, offset: at)
                at += Int64(got)
                written += Int64(got)
            }
        }
        try dst.truncate(to: size)
        try dst.fsync()
        return written
    }
}
