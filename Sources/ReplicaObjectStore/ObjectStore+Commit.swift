import ReplicaLog
import ReplicaStore
import ReplicaSystem

/// Committing shipped logs: every log is verified (each record's checksum, sealed, one chain
/// per disk continuing the last commit), uploaded as an immutable object with its extent
/// index, checked in the bucket, and only then named by a new catalog generation.
extension ObjectStore {
    @discardableResult
    public func commit(vm: String, logs: [String: [SourceFile]], consistency: RecoveryPoint.Consistency,
                       cut: UInt64, timeNanos: UInt64) throws -> RecoveryPoint {
        let start = try latestCatalog(vm)
        try Self.checkTakesReplication(start, vm: vm)
        let id = start.store.nextPointID
        // 1. Verify every log here, on the bytes that will be uploaded.
        var plans: [(disk: String, built: [(SourceFile, LogIndex.Built)])] = []
        for (disk, files) in logs.sorted(by: { $0.key < $1.key }) {
            guard let entry = start.store.disks.first(where: { $0.name == disk }) else {
                throw ReplicaError("disk \(disk) is not part of VM \(vm)", kind: .nonRecoverable)
            }
            var fresh: [(SourceFile, LogIndex.Built)] = []
            for file in files {
                let built = try LogIndex.build(path: file.localPath, segmentSize: segmentSize, partSize: partSize)
                // A resend of a log committed before is skipped; a damaged one never is.
                if built.scan.tail == .clean, let next = entry.nextLSN, built.scan.nextLSN <= next,
                   entry.chain == built.scan.header.chainHex { continue }
                fresh.append((file, built))
            }
            guard !fresh.isEmpty else { continue }
            // Sorts by LSN and refuses gaps, overlaps, damage and mixed chains.
            let scans = try LogApplier(scans: fresh.map(\.1.scan)).scans
            let ordered = scans.map { scan in fresh.first { $0.1.scan.path == scan.path }! }
            let first = scans[0].header
            if let chain = entry.chain, chain != first.chainHex {
                throw ReplicaError("\(scans[0].path): foreign log chain \(first.chainHex) for disk \(disk) (the replica follows \(chain)): resync required", kind: .resyncRequired)
            }
            if let next = entry.nextLSN, first.firstLSN != next {
                throw ReplicaError("broken log chain for disk \(disk): replica expects LSN \(next), shipped logs start at \(first.firstLSN): resync required", kind: .resyncRequired)
            }
            guard scans.allSatisfy({ $0.isSealed && $0.tail == .clean }) else {
                throw ReplicaError("disk \(disk): shipped logs must be sealed and undamaged", kind: .nonRecoverable)
            }
            plans.append((disk, ordered))
        }
        // 2. Upload the logs and their indexes (immutable objects the catalog does not name yet).
        var refs: [String: [LogRef]] = [:]
        var ends: [String: (chain: String, next: UInt64, scans: [LogScan])] = [:]
        for plan in plans {
            for (file, built) in plan.built {
                let key = ObjectLayout.log(vm, point: id, disk: plan.disk, name: file.name)
                let log = try uploadVerified(key, path: file.localPath, built: built)
                let index = try putChecked(ObjectLayout.index(ofLog: key), built.index.encoded())
                refs[plan.disk, default: []].append(LogRef(log: log, index: index))
            }
            let scans = plan.built.map(\.1.scan)
            ends[plan.disk] = (scans[0].header.chainHex, scans.last!.nextLSN, scans)
        }
        // Test hook: the logs are stored, no catalog names them; a kill here loses nothing committed.
        FaultPoint.reach("s3-commit-before-catalog")
        // 3. The commit step: a catalog generation that names the point.
        let point = try mutate(vm) { catalog -> RecoveryPoint? in
            try Self.checkTakesReplication(catalog, vm: vm)
            guard catalog.store.nextPointID == id, catalog.store.disks.map(\.nextLSN) == start.store.disks.map(\.nextLSN) else {
                throw ReplicaError("VM \(vm): another writer committed meanwhile; the logs are committed again next cycle", kind: .recoverable)
            }
            for i in catalog.store.disks.indices {
                let name = catalog.store.disks[i].name
                var size = catalog.store.disks[i].size ?? catalog.baseSizes[name] ?? 0
                if let end = ends[name] {
                    for scan in end.scans { size = scan.sizeAfter(size) }
                    catalog.store.disks[i].chain = end.chain
                    catalog.store.disks[i].nextLSN = end.next
                    catalog.store.disks[i].size = size
                }
                let logs = (catalog.resyncLogs[name] ?? []) + (refs[name] ?? [])
                if !logs.isEmpty { catalog.logs[String(id), default: [:]][name] = logs }
            }
            var sizes: [String: Int64] = [:]
            for disk in catalog.store.disks { sizes[disk.name] = disk.size ?? catalog.baseSizes[disk.name] ?? 0 }
            let point = RecoveryPoint(id: id, timeNanos: timeNanos, consistency: consistency, cut: cut, diskSizes: sizes)
            catalog.store.points.append(point)
            catalog.store.nextPointID = id + 1
            catalog.store.resync = nil // a finished resync's first consistent point
            catalog.resyncLogs = [:]
            return point
        }!
        // An upload an earlier failed attempt left unfinished (a retry may cut its logs
        // differently, under other keys) holds parts no catalog will name: dropped now.
        try? bucket.abortUploads(prefix: ObjectLayout.logsRoot(vm))
        return point
    }

    /// Refuses replication into a VM failed over for real, or with a resync half done.
    static func checkTakesReplication(_ catalog: ObjectCatalog, vm: String) throws {
        if let failover = catalog.failover, failover.kind != .test {
            throw ReplicaError("VM \(vm) is failed over (\(failover.kind.rawValue) failover to point \(failover.point.id)): the store takes no replication until failback")
        }
        if let resync = catalog.store.resync, !resync.finished {
            throw ReplicaError("VM \(vm): a resync is in progress: no recovery point from a half-synced replica")
        }
    }
}
