import ReplicaLog
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Resync, rebase, verify and export: the source disks are compared with a point read from the
/// bucket (SHA-256 per block, `BlockSync`); the differing blocks become a redo log object that
/// the next point starts with (resync) or a point of its own (rebase). Committed points are
/// never touched, and a resync cut short leaves only objects no catalog names.
extension ObjectStore {
    /// Where redo logs of differing blocks are written before their upload.
    var stagingDirectory: String { cache.directory + "/.staging" }

    @discardableResult
    public func resync(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition], reason: String?,
                       blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> ResyncReport {
        let started = Clock.nowNanos()
        let catalog = try latestCatalog(vm)
        if let failover = catalog.failover {
            throw ReplicaError("VM \(vm) is failed over (\(failover.summary)): resync after the failover is cleaned up or failed back")
        }
        for disk in catalog.store.disks where sources[disk.name] == nil || chains[disk.name] == nil {
            throw ReplicaError("resync of VM \(vm): disk \(disk.name) has no source")
        }
        let id = catalog.store.nextPointID
        let names = catalog.store.disks.map(\.name)
        var total: Int64 = 0
        for name in names { total += (try? sources[name]!.size()) ?? 0 }
        var doneBefore: Int64 = 0, sentBefore: Int64 = 0
        var reports: [String: BlockSync.Report] = [:]
        var refs: [String: [LogRef]] = [:]
        let sync = BlockSync(blockSize: blockSize)
        for name in names {
            // Compared with the latest point: a finished resync not yet in a point is superseded.
            let reader = try ObjectPointReader(store: self, vm: vm, disk: name, catalog: catalog, pointID: nil)
            let source = sources[name]!
            let size = try source.size()
            let path = try stagedLogPath(vm, name, id)
            defer { try? FileSystem.remove(path) }
            let log = try DirectLogWriter(path: path, header: LogHeader(
                imageName: name, chainID: [UInt8](repeating: 0, count: 16), sequence: UInt64(id), firstLSN: 1,
                createdNanos: Clock.nowNanos(), imageSize: UInt64(size)))
            // The size first: the blocks are compared with the latest point cut or grown to it.
            try log.appendSetSize(UInt64(size))
            let before = (doneBefore, sentBefore)
            let report = try sync.forEachDifference(source: source.localPath, reader: reader, progress: { p in
                progress?(BlockSync.Progress(bytesDone: before.0 + p.bytesDone, bytesTotal: max(total, before.0 + p.bytesTotal),
                                             bytesSent: before.1 + p.bytesSent))
            }) { offset, bytes, count in
                var at = 0
                while at < count {
                    let n = min(DirectLogWriter.maxData, count - at)
                    try log.appendWrite(bytes + at, count: n, offset: offset + Int64(at))
                    at += n
                }
            }
            try log.seal(reason: .rotation, cutID: UInt64(id))
            refs[name] = [try storeRedo(path, key: ObjectLayout.resyncLog(vm, point: id, disk: name, kind: "resync"))]
            reports[name] = report
            doneBefore += report.sourceSize
            sentBefore += report.bytesSent
        }
        // One catalog generation moves the chains and names the blocks; a crash before it
        // leaves the replica as it was.
        try mutate(vm) { c -> Bool? in
            guard c.failover == nil, c.store.nextPointID == id else {
                throw ReplicaError("VM \(vm) changed during its resync (a failover or another writer): resync again", kind: .recoverable)
            }
            let before = c.store.resync?.disksBefore ?? c.store.disks
            c.store.resync = StoreCatalog.Resync(pointID: id, finished: true, startedNanos: started, reason: reason, disksBefore: before)
            for i in c.store.disks.indices {
                let name = c.store.disks[i].name
                c.store.disks[i].chain = chains[name]!.chain
                c.store.disks[i].nextLSN = chains[name]!.nextLSN
                c.store.disks[i].size = reports[name]!.sourceSize
            }
            c.resyncLogs = refs
            return true
        }
        return ResyncReport(vm: vm, disks: reports, bytesCompared: reports.values.reduce(0) { $0 + $1.bytesCompared },
                            bytesSent: sentBefore, diskBytes: doneBefore, seconds: Double(Clock.nowNanos() - started) / 1e9)
    }

    public func resyncMark(_ vm: String) throws -> StoreCatalog.Resync? { try latestCatalog(vm).store.resync }

    public func rebase(vm: String, sources: [String: SourceFile], blockSize: Int) throws -> (RecoveryPoint, Int64) {
        let catalog = try latestCatalog(vm)
        let id = catalog.store.nextPointID
        let sync = BlockSync(blockSize: blockSize)
        var refs: [String: [LogRef]] = [:]
        var sizes: [String: Int64] = [:]
        var written: Int64 = 0
        for disk in catalog.store.disks.map(\.name) {
            guard let source = sources[disk] else { throw ReplicaError("rebase of VM \(vm): no source for disk \(disk)") }
            let reader = try ObjectPointReader(store: self, vm: vm, disk: disk, catalog: catalog, pointID: nil)
            let ranges = try sync.diff(source.localPath, reader: reader)
            let size = try source.size()
            sizes[disk] = size
            guard !ranges.isEmpty || size != reader.size else { continue }
            let path = try stagedLogPath(vm, disk, id)
            defer { try? FileSystem.remove(path) }
            written += try DirectLogWriter.writeRedo(ranges, from: source.localPath, size: size, to: path, disk: disk, pointID: id)
            refs[disk] = [try storeRedo(path, key: ObjectLayout.log(vm, point: id, disk: disk, name: "rebase.hrl"))]
        }
        let point = try mutate(vm) { c -> RecoveryPoint? in
            guard c.store.nextPointID == id else {
                throw ReplicaError("VM \(vm) changed during its rebase (another writer): rebase again", kind: .recoverable)
            }
            for i in c.store.disks.indices {
                c.store.disks[i].chain = nil
                c.store.disks[i].nextLSN = nil
                c.store.disks[i].size = sizes[c.store.disks[i].name]
            }
            // The rebase compares with the latest point: a finished resync's blocks are superseded.
            c.store.resync = nil
            c.resyncLogs = [:]
            if !refs.isEmpty { c.logs[String(id)] = refs }
            let point = RecoveryPoint(id: id, timeNanos: Clock.nowNanos(), consistency: .crash, cut: 0, diskSizes: sizes)
            c.store.points.append(point)
            c.store.nextPointID = id + 1
            return point
        }!
        return (point, written)
    }

    public func verify(vm: String, sources: [String: SourceFile], point: PointSelector?, blockSize: Int) throws -> [String: [Range<Int64>]] {
        let catalog = try latestCatalog(vm)
        let id = try point.map { try resolve($0, in: catalog.store, vm: vm).id }
        let sync = BlockSync(blockSize: blockSize)
        var result: [String: [Range<Int64>]] = [:]
        for disk in catalog.store.disks.map(\.name) {
            guard let source = sources[disk] else { throw ReplicaError("disk \(disk) of VM \(vm) has no source") }
            let reader = try ObjectPointReader(store: self, vm: vm, disk: disk, catalog: catalog, pointID: id)
            result[disk] = try sync.diff(source.localPath, reader: reader)
        }
        return result
    }

    /// Writes the disk at the point to `destination` by range reads; zero ranges stay holes.
    @discardableResult
    public func export(vm: String, point selector: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint {
        let catalog = try latestCatalog(vm)
        guard catalog.store.disks.contains(where: { $0.name == disk }) else { throw ReplicaError("disk \(disk) is not part of VM \(vm)") }
        let point = try resolve(selector, in: catalog.store, vm: vm)
        let reader = try ObjectPointReader(store: self, vm: vm, disk: disk, catalog: catalog, pointID: point.id)
        try reader.copy(to: destination, chunkBytes: catalog.chunkSize)
        return point
    }

    // MARK: redo logs of differing blocks

    private func stagedLogPath(_ vm: String, _ disk: String, _ id: Int) throws -> String {
        try FileSystem.mkdirs(stagingDirectory, mode: 0o700)
        let path = stagingDirectory + "/\(vm)-\(disk)-\(id)-\(getpid()).hrl"
        try? FileSystem.remove(path)
        return path
    }

    /// Verifies a redo log written here, uploads it and its index: a `LogRef` for a catalog.
    private func storeRedo(_ path: String, key: String) throws -> LogRef {
        let built = try LogIndex.build(path: path, segmentSize: segmentSize, partSize: partSize)
        guard built.scan.isSealed, built.scan.tail == .clean else { throw ReplicaError("\(path): damaged redo log (\(built.scan.tail))") }
        let log = try uploadVerified(key, path: path, built: built)
        return LogRef(log: log, index: try putChecked(ObjectLayout.index(ofLog: key), built.index.encoded()))
    }
}
