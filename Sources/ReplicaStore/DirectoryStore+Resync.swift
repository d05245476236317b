import Foundation
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

extension StoreCatalog {
    /// A resync in progress (or done and waiting for its first point). Its blocks are a redo
    /// log in `points/<pointID>.resync/` that the next commit's point starts with; until that
    /// commit no point includes them, and a resync cut short is simply dropped.
    public struct Resync: Codable, Sendable {
        /// The id the next commit will give its point.
        public var pointID: Int
        /// Every disk compared and its chain moved to the resync's cut.
        public var finished: Bool
        public var startedNanos: UInt64
        public var reason: String?
        /// The disks' chain positions and sizes before the resync, restored when it is dropped.
        public var disksBefore: [Disk]

        public init(pointID: Int, finished: Bool, startedNanos: UInt64, reason: String?, disksBefore: [Disk]) {
            self.pointID = pointID
            self.finished = finished
            self.startedNanos = startedNanos
            self.reason = reason
            self.disksBefore = disksBefore
        }
    }
}

/// Resync into the target store without losing old points (docs/target-store.md, Resync):
/// the live source disks are compared block by block (SHA-256 per block) with the latest
/// point, and the differing blocks are stored as a redo log that the next point starts with.
/// The base and the committed points are never touched, so old points still export and a
/// crash midway leaves nothing to repair but a directory to delete.
extension DirectoryStore {
    func resyncDirectory(_ vm: String, _ id: Int) -> String { pointDirectory(vm, id) + ".resync" }

    /// Compares each disk of the latest point with `sources` (live images the source keeps
    /// writing to), stores the differing blocks, and moves each disk's chain to `chains` (the
    /// logs cut just before the comparison), so the next commit, replaying the logs written
    /// during the copy over those blocks, makes a consistent point.
    @discardableResult
    public func resync(vm: String, sources: [String: String], chains: [String: (chain: String, nextLSN: UInt64)],
                       reason: String? = nil, blockSize: Int = 1 << 20,
                       progress: ((BlockSync.Progress) -> Void)? = nil) throws -> ResyncReport {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", code: .unknownVM) }
        let started = Clock.nowNanos()
        let (mark, diskNames) = try withLock(vm, exclusive: true) { () -> (StoreCatalog.Resync, [String]) in
            if let failover = failoverState(vm) {
                throw ReplicaError("VM \(vm) is failed over (\(failover.summary)): resync after the failover is cleaned up or failed back")
            }
            try recoverLocked(vm)
            var catalog = try StoreCatalog.load(catalogPath(vm))
            for disk in catalog.disks {
                guard sources[disk.name] != nil, chains[disk.name] != nil else {
                    throw ReplicaError("resync of VM \(vm): disk \(disk.name) has no source")
                }
            }
            // A resync done but not yet followed by a point is dropped: this one compares with
            // the latest point again and carries the whole difference.
            if catalog.resync != nil { try dropResyncLocked(vm, &catalog) }
            let mark = StoreCatalog.Resync(pointID: catalog.nextPointID, finished: false, startedNanos: started,
                                           reason: reason, disksBefore: catalog.disks)
            let dir = resyncDirectory(vm, mark.pointID)
            if FileSystem.exists(dir) { try removeTree(dir) }
            try FileSystem.mkdirs(dir)
            try FileSystem.fsyncDirectory(vmDirectory(vm) + "/points")
            catalog.resync = mark
            try catalog.save(catalogPath(vm))
            return (mark, catalog.disks.map(\.name))
        }
        // A live resync holds this lock, so that nobody drops it under it.
        let live = try FileDescriptor.open(resyncDirectory(vm, mark.pointID) + "/.live", O_RDWR | O_CREAT, mode: 0o600)
        defer { live.close() }
        try live.lock(exclusive: true)

        var total: Int64 = 0
        for name in diskNames { total += (try? FileSystem.stat(sources[name]!).st_size).map(Int64.init) ?? 0 }
        var doneBefore: Int64 = 0
        var sentBefore: Int64 = 0
        var reports: [String: BlockSync.Report] = [:]
        for name in diskNames {
            let report = try resyncDisk(vm, name, source: sources[name]!, pointID: mark.pointID, blockSize: blockSize) { p in
                progress?(BlockSync.Progress(bytesDone: doneBefore + p.bytesDone, bytesTotal: max(total, doneBefore + p.bytesTotal),
                                             bytesSent: sentBefore + p.bytesSent))
            }
            reports[name] = report
            doneBefore += report.sourceSize
            sentBefore += report.bytesSent
        }
        // Finish: the chains move to the cut; the blocks wait for the next commit's point.
        try withLock(vm, exclusive: true) {
            try FileSystem.fsyncDirectory(resyncDirectory(vm, mark.pointID))
            var catalog = try StoreCatalog.load(catalogPath(vm))
            for i in catalog.disks.indices {
                let name = catalog.disks[i].name
                let c = chains[name]!
                catalog.disks[i].chain = c.chain
                catalog.disks[i].nextLSN = c.nextLSN
                catalog.disks[i].size = reports[name]!.sourceSize
            }
            catalog.resync?.finished = true
            try catalog.save(catalogPath(vm))
        }
        return ResyncReport(vm: vm, disks: reports, bytesCompared: reports.values.reduce(0) { $0 + $1.bytesCompared },
                            bytesSent: sentBefore, diskBytes: doneBefore, seconds: Double(Clock.nowNanos() - started) / 1e9)
    }

    /// One disk: the source's size, then every block that differs from the latest point, as a
    /// redo log sealed and synced at the end.
    private func resyncDisk(_ vm: String, _ disk: String, source: String, pointID: Int, blockSize: Int,
                            progress: @escaping (BlockSync.Progress) -> Void) throws -> BlockSync.Report {
        let started = Clock.nowNanos()
        let sync = BlockSync(blockSize: blockSize)
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let view = try PointView(store: self, vm: vm, disk: disk, pointID: nil)
        let size = try src.size()
        let log = try DirectLogWriter(path: resyncDirectory(vm, pointID) + "/" + Self.redoLogName(disk, 1), header: LogHeader(
            imageName: disk, chainID: [UInt8](repeating: 0, count: 16), sequence: UInt64(pointID), firstLSN: 1,
            createdNanos: Clock.nowNanos(), imageSize: UInt64(size)))
        // The size first: the blocks are compared with the latest point cut or grown to it.
        try log.appendSetSize(UInt64(size))
        let result = try sync.walk(src, size, ZeroExtended(view: view), size, length: size, progress: progress) { window in
            var sent: Int64 = 0
            try sync.forEachRun(window.differing) { first, count in
                var at = first * blockSize
                let end = min((first + count) * blockSize, window.sourceCount)
                while at < end {
                    let n = min(DirectLogWriter.maxData, end - at)
                    try log.appendWrite(window.source + at, count: n, offset: window.offset + Int64(at))
                    at += n
                    sent += Int64(n)
                }
            }
            return sent
        }
        try log.seal(reason: .rotation, cutID: UInt64(pointID))
        return BlockSync.Report(blockSize: blockSize, blocks: sync.blockCount(size), differingBlocks: result.differing,
                                bytesCompared: result.compared, bytesSent: result.sent,
                                seconds: Double(Clock.nowNanos() - started) / 1e9, sourceSize: size)
    }

    /// Forgets a resync (finished or not): its blocks, and the chain positions it moved.
    func dropResyncLocked(_ vm: String, _ catalog: inout StoreCatalog) throws {
        guard let mark = catalog.resync else { return }
        catalog.disks = mark.disksBefore
        catalog.resync = nil
        try catalog.save(catalogPath(vm))
        let dir = resyncDirectory(vm, mark.pointID)
        if FileSystem.exists(dir) { try removeTree(dir) }
    }

    /// Drops a resync a crash interrupted (unfinished, and no live process holding it).
    /// A finished one stays: the next commit makes its point.
    func rollBackInterruptedResyncLocked(_ vm: String) throws {
        var catalog = try StoreCatalog.load(catalogPath(vm))
        guard let mark = catalog.resync, !mark.finished else { return }
        let livePath = resyncDirectory(vm, mark.pointID) + "/.live"
        if FileSystem.exists(livePath) {
            let live = try FileDescriptor.open(livePath, O_RDWR)
            defer { live.close() }
            guard try live.tryLockExclusive() else { return } // still running in another process
        }
        try dropResyncLocked(vm, &catalog)
    }

    /// The resync state of a VM's replica (nil when none is marked).
    public func resyncMark(_ vm: String) throws -> StoreCatalog.Resync? { try catalog(vm).resync }
}

extension DirectoryStore {
    /// Compares the source disks with the latest point (or `point`) block by block and returns
    /// each disk's differing ranges (empty when equal). A resync not yet followed by a point
    /// is not part of any point, so it is not compared.
    public func verify(vm: String, sources: [String: String], point: PointSelector?,
                       blockSize: Int = 1 << 20) throws -> [String: [Range<Int64>]] {
        let catalog = try catalog(vm)
        let id = try point.map { try resolve($0, in: catalog, vm: vm).id }
        let sync = BlockSync(blockSize: blockSize)
        var result: [String: [Range<Int64>]] = [:]
        for disk in catalog.disks.map(\.name) {
            guard let source = sources[disk] else { throw ReplicaError("disk \(disk) of VM \(vm) has no source") }
            // Under the shared lock: no prune may merge past an older point while it is read.
            result[disk] = try withLock(vm, exclusive: false) {
                try sync.diff(source, try PointView(store: self, vm: vm, disk: disk, pointID: id, locked: true))
            }
        }
        return result
    }
}

/// A point's view read as if cut or grown to any size: zeros past its end, as after a set-size.
private struct ZeroExtended: BlockReader {
    let view: PointView
    func readBlock(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        try view.read(into: buffer, count: count, offset: offset)
        return count
    }
    var file: FileDescriptor? { nil }
}
