import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension StoreCatalog {
    /// A resync in progress (or done and waiting for its first point). While set, the replica
    /// is not at any recovery point: exports go back through the resync's undo logs, and the
    /// next commit, which makes the first consistent point after it, clears it.
    public struct Resync: Codable, Sendable {
        /// The id the next commit will give its point; the resync's undo logs live in
        /// `points/<id>.resync/` and belong to that point from then on.
        public var pointID: Int
        /// Every disk copied and its chain moved to the resync's cut.
        public var finished: Bool
        public var startedNanos: UInt64
        public var reason: String?
        /// The disks' chain positions before the resync, restored when it is rolled back.
        public var disksBefore: [Disk]
    }
}

/// Resync into the target store without losing old points (docs/target-store.md, Resync):
/// the replica is made equal to the live source disks block by block (SHA-256 per block,
/// only differing blocks written), and every replica byte it overwrites is first saved, and
/// made durable, in an undo log, so points taken before it still export and a crash midway
/// rolls back to the last point.
extension TargetStore {
    public struct ResyncReport: Codable, Sendable {
        public var vm: String
        public var disks: [String: BlockSync.Report]
        public var bytesCompared: Int64
        public var bytesSent: Int64
        public var diskBytes: Int64
        public var seconds: Double
    }

    func resyncDirectory(_ vm: String, _ id: Int) -> String { pointDirectory(vm, id) + ".resync" }

    /// Makes each replica disk equal to `sources` (live images the source keeps writing to) and
    /// moves each disk's chain to `chains` (the logs cut just before the copy), so the next
    /// commit, replaying the logs written during the copy, makes a consistent point.
    @discardableResult
    public func resync(vm: String, sources: [String: String], chains: [String: (chain: String, nextLSN: UInt64)],
                       reason: String? = nil, blockSize: Int = 1 << 20,
                       progress: ((BlockSync.Progress) -> Void)? = nil) throws -> ResyncReport {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)") }
        let started = Clock.nowNanos()
        // Begin: finish or undo what a crash left, then record the resync before any byte changes.
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
            // A resync done but not yet followed by a point is undone first: its undo logs
            // would otherwise have to be stacked.
            if catalog.resync != nil {
                try rollBackResyncLocked(vm, &catalog)
            }
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
        // A live resync holds this lock, so that nobody rolls it back under it.
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
        // Finish: the chains move to the cut; the replica stays marked until the next commit.
        try withLock(vm, exclusive: true) {
            try FileSystem.fsyncDirectory(vmDirectory(vm) + "/replica")
            var catalog = try StoreCatalog.load(catalogPath(vm))
            for i in catalog.disks.indices {
                let c = chains[catalog.disks[i].name]!
                catalog.disks[i].chain = c.chain
                catalog.disks[i].nextLSN = c.nextLSN
            }
            catalog.resync?.finished = true
            try catalog.save(catalogPath(vm))
        }
        return ResyncReport(vm: vm, disks: reports, bytesCompared: reports.values.reduce(0) { $0 + $1.bytesCompared },
                            bytesSent: sentBefore, diskBytes: doneBefore, seconds: Double(Clock.nowNanos() - started) / 1e9)
    }

    /// One disk: undo log first (the old size, then the pre-image of every block about to
    /// change, made durable before the block is written), the replica written window by window
    /// under the store's exclusive lock so an export never sees a replica ahead of its undo.
    private func resyncDisk(_ vm: String, _ disk: String, source: String, pointID: Int, blockSize: Int,
                            progress: @escaping (BlockSync.Progress) -> Void) throws -> BlockSync.Report {
        let started = Clock.nowNanos()
        let sync = BlockSync(blockSize: blockSize)
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let replica = try FileDescriptor.open(replicaPath(vm, disk), O_RDWR)
        defer { replica.close() }
        let oldSize = try replica.size()
        let size = try src.size()
        let undo = try ChangeLog.create(path: resyncDirectory(vm, pointID) + "/" + disk + ".undo.hrl", header: LogHeader(
            imageName: disk, chainID: [UInt8](repeating: 0, count: 16), sequence: UInt64(pointID), firstLSN: 1,
            createdNanos: Clock.nowNanos(), imageSize: UInt64(oldSize)))
        // The size first: applied before the pre-images, it cuts whatever the resync appended.
        try undo.appendSetSize(UInt64(oldSize))
        try undo.sync()
        let saveChunk = min(blockSize, 4 << 20)
        func save(_ bytes: UnsafeRawPointer, count: Int, at offset: Int64) throws {
            var done = 0
            while done < count {
                let n = min(saveChunk, count - done)
                let data = UnsafeRawBufferPointer(start: bytes + done, count: n)
                try undo.appendWrite(data, offset: UInt64(offset) + UInt64(done), dataCRC: Checksum.crc32c(data))
                done += n
            }
        }
        if size != oldSize {
            try withLock(vm, exclusive: true) {
                if size < oldSize {
                    // The tail the cut drops goes to the undo log first.
                    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4 << 20, alignment: 4096)
                    defer { buffer.deallocate() }
                    var at = size
                    while at < oldSize {
                        let n = try replica.pread(into: buffer, count: Int(min(Int64(4 << 20), oldSize - at)), offset: at)
                        guard n > 0 else { break }
                        try save(buffer, count: n, at: at)
                        at += Int64(n)
                    }
                    try undo.sync()
                }
                try replica.truncate(to: size)
            }
        }
        let result = try sync.walk(src, size, replica, size, length: size, progress: progress) { window in
            try withLock(vm, exclusive: true) {
                var sent: Int64 = 0
                try sync.forEachRun(window.differing) { first, count in
                    let at = first * blockSize
                    let end = min((first + count) * blockSize, window.sourceCount)
                    // Only bytes the replica had before the resync need saving.
                    let oldEnd = Int(max(0, min(Int64(end), oldSize - window.offset)))
                    if oldEnd > at { try save(window.target + at, count: oldEnd - at, at: window.offset + Int64(at)) }
                    sent += Int64(end - at)
                }
                try undo.sync()
                try sync.forEachRun(window.differing) { first, count in
                    let at = first * blockSize
                    let end = min((first + count) * blockSize, window.sourceCount)
                    try replica.pwrite(window.source + at, count: end - at, offset: window.offset + Int64(at))
                }
                return sent
            }
        }
        try replica.fsync()
        try undo.seal(reason: .rotation, cutID: UInt64(pointID))
        try undo.sync()
        return BlockSync.Report(blockSize: blockSize, blocks: sync.blockCount(size), differingBlocks: result.differing,
                                bytesCompared: result.compared, bytesSent: result.sent,
                                seconds: Double(Clock.nowNanos() - started) / 1e9, sourceSize: size)
    }

    /// Applies the undo log of the resync that preceded point `pointID` to `target`, if there
    /// was one for this disk. A tail torn by a crash is fine: every record before it was durable
    /// before the replica bytes it saves were overwritten, and nothing after it was written.
    func applyResyncUndo(_ vm: String, pointID: Int, disk: String, to target: FileDescriptor) throws {
        let path = resyncDirectory(vm, pointID) + "/" + disk + ".undo.hrl"
        guard FileSystem.exists(path) else { return }
        let scan = try LogScanner.scan(path) { header, data in try LogApplier.applyRecord(header, data, to: target) }
        if case .corrupt(let offset, let why) = scan.tail {
            throw ReplicaError("\(path): damaged resync undo log at byte \(offset) (\(why))")
        }
    }

    /// Puts the replicas back where they were before a resync (finished or not) and forgets it.
    func rollBackResyncLocked(_ vm: String, _ catalog: inout StoreCatalog) throws {
        guard let mark = catalog.resync else { return }
        let dir = resyncDirectory(vm, mark.pointID)
        for disk in catalog.disks.map(\.name) where FileSystem.exists(dir + "/" + disk + ".undo.hrl") {
            let target = try FileDescriptor.open(replicaPath(vm, disk), O_RDWR)
            defer { target.close() }
            try applyResyncUndo(vm, pointID: mark.pointID, disk: disk, to: target)
            try target.fsync()
        }
        catalog.disks = mark.disksBefore
        catalog.resync = nil
        try catalog.save(catalogPath(vm))
        if FileSystem.exists(dir) { try removeTree(dir) }
    }

    /// Rolls back a resync a crash interrupted (unfinished, and no live process holding it).
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
        try rollBackResyncLocked(vm, &catalog)
    }

    /// The resync state of a VM's replica (nil when none is marked).
    public func resyncMark(_ vm: String) throws -> StoreCatalog.Resync? { try catalog(vm).resync }
}

extension TargetStore {
    /// Compares the source disks with the replica (or with the export of `point`) block by
    /// block and returns each disk's differing ranges (empty when equal). Without a point it
    /// reads the replica under the shared lock; while a resync has left the replica at no
    /// point, or for an older point, it compares against an export.
    public func verify(vm: String, sources: [String: String], point: PointSelector?,
                       blockSize: Int = 1 << 20) throws -> [String: [Range<Int64>]] {
        let catalog = try catalog(vm)
        let sync = BlockSync(blockSize: blockSize)
        var result: [String: [Range<Int64>]] = [:]
        for disk in catalog.disks.map(\.name) {
            guard let source = sources[disk] else { throw ReplicaError("disk \(disk) of VM \(vm) has no source") }
            if point == nil && catalog.resync == nil {
                result[disk] = try withLock(vm, exclusive: false) { try sync.diff(source, replicaPath(vm, disk)) }
            } else {
                let copy = vmDirectory(vm) + "/.verify-" + disk
                defer { _ = unlink(copy) }
                try export(vm: vm, point: point ?? .latest, disk: disk, to: copy)
                result[disk] = try sync.diff(source, copy)
            }
        }
        return result
    }
}
