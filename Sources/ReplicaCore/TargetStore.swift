import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The secondary site: per VM, replica disks at the latest recovery point plus one undo log
/// per disk and point (the bytes each point's apply overwrote, as Hyper-V Replica keeps undo
/// logs since 2012 R2). Any point in the window is the replica with the undo logs of the
/// later points applied, newest first. Layout and crash rules: docs/target-store.md.
public final class TargetStore {
    public let root: String

    /// Which point to read.
    public enum PointSelector: Equatable {
        case id(Int)
        case latest
        case latestApp

        public init(_ text: String) throws {
            switch text {
            case "latest": self = .latest
            case "latest-app": self = .latestApp
            default:
                guard let id = Int(text) else { throw ReplicaError("bad recovery point '\(text)': use an id, latest or latest-app") }
                self = .id(id)
            }
        }
    }

    public init(root: String) throws {
        // A missing store may be a share not mounted yet; one that refuses writes needs a person.
        guard FileSystem.isDirectory(root) else { throw ReplicaError("target store \(root) does not exist", kind: .recoverable) }
        guard access(root, W_OK) == 0 else {
            let refused = [EACCES, EPERM, EROFS].contains(errno)
            throw ReplicaError("target store \(root) is not writable", kind: refused ? .nonRecoverable : .recoverable)
        }
        self.root = try FileSystem.realPath(root)
    }

    func vmDirectory(_ vm: String) -> String { root + "/" + vm }
    func catalogPath(_ vm: String) -> String { vmDirectory(vm) + "/catalog.json" }
    func replicaPath(_ vm: String, _ disk: String) -> String { vmDirectory(vm) + "/replica/" + disk }
    func pointDirectory(_ vm: String, _ id: Int, pending: Bool = false) -> String {
        vmDirectory(vm) + "/points/" + String(id).leftPadded(8) + (pending ? ".pending" : "")
    }

    public func hasVM(_ vm: String) -> Bool { FileSystem.exists(catalogPath(vm)) }

    /// An initial replication in progress: where each disk's chain starts and how far its
    /// copy got, so that a copy interrupted by a crash resumes there.
    public struct InitialCopy: Codable, Sendable {
        public struct Disk: Codable, Sendable {
            public var name: String
            public var chain: String
            public var nextLSN: UInt64
            /// Offset below which the replica holds the copy.
            public var copiedTo: Int64
            public var done: Bool
        }
        public var disks: [Disk]
    }

    func initialPath(_ vm: String) -> String { vmDirectory(vm) + "/initial.json" }

    public func initialCopy(_ vm: String) -> InitialCopy? {
        guard let bytes = try? FileSystem.readFile(initialPath(vm)) else { return nil }
        return try? JSONDecoder().decode(InitialCopy.self, from: Data(bytes))
    }

    func saveInitial(_ vm: String, _ state: InitialCopy) throws {
        let data = try JSONEncoder().encode(state)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(initialPath(vm), $0) }
    }

    /// Starts (or, if one was interrupted, resumes) the initial copy of a VM: each disk is
    /// copied from `sources` (holes skipped) while the source keeps writing; `chains` says where
    /// each disk's logs continue after the cut taken before the copy. The catalog, written
    /// last, marks the VM replicated. Returns the bytes copied by this call.
    @discardableResult
    public func seed(vm: String, sources: [String: String], chains: [String: (chain: String, nextLSN: UInt64)],
                     progress: ((Int64) -> Void)? = nil) throws -> Int64 {
        guard !hasVM(vm) else { throw ReplicaError("VM \(vm) already has a replica in \(root)") }
        try FileSystem.mkdirs(vmDirectory(vm) + "/replica")
        try FileSystem.mkdirs(vmDirectory(vm) + "/points")
        var state = initialCopy(vm) ?? InitialCopy(disks: sources.keys.sorted().map { name in
            InitialCopy.Disk(name: name, chain: chains[name]?.chain ?? "", nextLSN: chains[name]?.nextLSN ?? 0, copiedTo: 0, done: false)
        })
        try saveInitial(vm, state)
        var copied: Int64 = 0
        for i in state.disks.indices where !state.disks[i].done {
            let disk = state.disks[i]
            guard let source = sources[disk.name] else { throw ReplicaError("disk \(disk.name) of VM \(vm) has no source") }
            var lastSaved = disk.copiedTo
            try SparseCopy.copy(from: source, to: replicaPath(vm, disk.name), resumeAt: disk.copiedTo) { n, reached in
                copied += n
                progress?(n)
                if reached - lastSaved >= 32 << 20 {
                    // Durable progress: the replica's bytes first, then the mark that says so.
                    if let fd = try? FileDescriptor.open(self.replicaPath(vm, disk.name), O_WRONLY) { try? fd.fdatasync(); fd.close() }
                    state.disks[i].copiedTo = reached
                    try? self.saveInitial(vm, state)
                    lastSaved = reached
                }
            }
            state.disks[i].done = true
            try saveInitial(vm, state)
        }
        try FileSystem.fsyncDirectory(vmDirectory(vm) + "/replica")
        var catalog = StoreCatalog(vm: vm, disks: state.disks.map(\.name))
        for i in catalog.disks.indices {
            let d = state.disks[i]
            if !d.chain.isEmpty {
                catalog.disks[i].chain = d.chain
                catalog.disks[i].nextLSN = d.nextLSN
            }
        }
        try catalog.save(catalogPath(vm))
        _ = unlink(initialPath(vm))
        return copied
    }

    /// Registers a VM from point-in-time copies of its disks (no chain yet: the first shipped
    /// logs start it).
    public func create(vm: String, seeds: [(disk: String, path: String)]) throws {
        var sources: [String: String] = [:]
        for s in seeds { sources[s.disk] = s.path }
        try seed(vm: vm, sources: sources, chains: [:])
    }

    /// Removes a VM's replica and its points.
    public func delete(vm: String) throws {
        guard hasVM(vm) else { return }
        if let failover = failoverState(vm) {
            throw ReplicaError("VM \(vm) is failed over (\(failover.summary)): its replica stays until failback or cleanup")
        }
        try withLock(vm, exclusive: true) {
            _ = unlink(catalogPath(vm))
            for sub in ["replica", "points"] {
                let dir = vmDirectory(vm) + "/" + sub
                for name in (try? FileSystem.list(dir)) ?? [] {
                    let path = dir + "/" + name
                    if FileSystem.isDirectory(path) { try removeTree(path) } else { try FileSystem.remove(path) }
                }
                _ = rmdir(dir)
            }
        }
        _ = unlink(vmDirectory(vm) + "/.lock")
        _ = unlink(vmDirectory(vm) + "/vm.json")
        _ = rmdir(vmDirectory(vm))
    }

    public func catalog(_ vm: String) throws -> StoreCatalog {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", kind: .nonRecoverable) }
        return try withLock(vm, exclusive: false) { try StoreCatalog.load(catalogPath(vm)) }
    }

    public func points(_ vm: String) throws -> [RecoveryPoint] { try catalog(vm).points }

    /// Verifies shipped logs (every checksum, one chain per disk continuing the last commit),
    /// saves undo data, applies them and commits one recovery point for all the VM's disks.
    /// Logs entirely before a disk's next LSN (already committed, sent again) are skipped.
    @discardableResult
    public func commit(vm: String, logs: [String: [String]], consistency: RecoveryPoint.Consistency,
                       cut: UInt64, timeNanos: UInt64 = Clock.nowNanos()) throws -> RecoveryPoint {
        try withLock(vm, exclusive: true) {
            if let failover = failoverState(vm), failover.kind != .test {
                throw ReplicaError("VM \(vm) is failed over (\(failover.kind.rawValue) failover to point \(failover.point.id)): the store takes no replication until failback")
            }
            try recoverLocked(vm)
            var catalog = try StoreCatalog.load(catalogPath(vm))
            if let resync = catalog.resync, !resync.finished {
                throw ReplicaError("VM \(vm): a resync is in progress: no recovery point from a half-synced replica")
            }
            // 1. Verify everything before touching anything.
            var plans: [(index: Int, applier: LogApplier?)] = []
            for (disk, paths) in logs {
                guard let index = catalog.disks.firstIndex(where: { $0.name == disk }) else {
                    throw ReplicaError("disk \(disk) is not part of VM \(vm)", kind: .nonRecoverable)
                }
                let entry = catalog.disks[index]
                var fresh: [LogScan] = []
                for path in paths {
                    let scan = try LogScanner.scan(path)
                    if let next = entry.nextLSN, scan.nextLSN <= next, entry.chain == scan.header.chainHex { continue }
                    fresh.append(scan)
                }
                guard !fresh.isEmpty else { plans.append((index, nil)); continue }
                let applier = try LogApplier(scans: fresh)
                let first = applier.scans[0].header
                if let chain = entry.chain, chain != first.chainHex {
                    throw ReplicaError("\(applier.scans[0].path): foreign log chain \(first.chainHex) for disk \(disk) (the replica follows \(chain)): resync required", kind: .resyncRequired)
                }
                if let next = entry.nextLSN, first.firstLSN != next {
                    throw ReplicaError("broken log chain for disk \(disk): replica expects LSN \(next), shipped logs start at \(first.firstLSN): resync required", kind: .resyncRequired)
                }
                guard applier.scans.allSatisfy(\.isSealed) else {
                    throw ReplicaError("disk \(disk): shipped logs must be sealed", kind: .nonRecoverable)
                }
                plans.append((index, applier))
            }
            let id = catalog.nextPointID
            let pending = pointDirectory(vm, id, pending: true)
            try FileSystem.mkdirs(pending)
            // 2. Undo data first, durable before the replica changes.
            for plan in plans {
                guard let applier = plan.applier else { continue }
                let disk = catalog.disks[plan.index].name
                try writeUndo(replica: replicaPath(vm, disk), scans: applier.scans,
                              to: pending + "/" + disk + ".undo.hrl", disk: disk, pointID: UInt64(id))
            }
            try FileSystem.fsyncDirectory(pending)
            // 3. Apply, then commit the catalog (the commit point), then drop the pending mark.
            for plan in plans {
                guard let applier = plan.applier else { continue }
                try applier.apply(to: replicaPath(vm, catalog.disks[plan.index].name))
                catalog.disks[plan.index].chain = applier.scans[0].header.chainHex
                catalog.disks[plan.index].nextLSN = applier.scans.last!.nextLSN
            }
            var sizes: [String: Int64] = [:]
            for disk in catalog.disks { sizes[disk.name] = Int64(try FileSystem.stat(replicaPath(vm, disk.name)).st_size) }
            let point = RecoveryPoint(id: id, timeNanos: timeNanos, consistency: consistency, cut: cut, diskSizes: sizes)
            catalog.points.append(point)
            catalog.nextPointID = id + 1
            catalog.resync = nil // a finished resync's first consistent point
            try catalog.save(catalogPath(vm))
            guard rename(pending, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", pending) }
            return point
        }
    }

    /// Writes a disk's bytes as of `selector` to `destination`.
    @discardableResult
    public func export(vm: String, point selector: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)") }
        // A commit a crash interrupted is finished or rolled back first.
        if try FileSystem.list(vmDirectory(vm) + "/points").contains(where: { $0.hasSuffix(".pending") }) {
            try recover(vm: vm)
        }
        return try withLock(vm, exclusive: false) {
            let catalog = try StoreCatalog.load(catalogPath(vm))
            guard catalog.disks.contains(where: { $0.name == disk }) else {
                throw ReplicaError("disk \(disk) is not part of VM \(vm)")
            }
            let point = try resolve(selector, in: catalog, vm: vm)
            try SparseCopy.copy(from: replicaPath(vm, disk), to: destination)
            let target = try FileDescriptor.open(destination, O_RDWR)
            defer { target.close() }
            // A resync not yet followed by a point is the newest change.
            if let resync = catalog.resync { try applyResyncUndo(vm, pointID: resync.pointID, disk: disk, to: target) }
            for later in catalog.points.filter({ $0.id > point.id }).sorted(by: { $0.id > $1.id }) {
                let undo = pointDirectory(vm, later.id) + "/" + disk + ".undo.hrl"
                guard FileSystem.isDirectory(pointDirectory(vm, later.id)) else {
                    throw ReplicaError("undo data of point \(later.id) of VM \(vm) is missing: cannot go back past it")
                }
                // No undo log: the disk did not change at that point.
                if FileSystem.exists(undo) { try applyUndo(undo, to: target) }
                // Then the resync that preceded that point, if any.
                try applyResyncUndo(vm, pointID: later.id, disk: disk, to: target)
            }
            try target.fsync()
            return point
        }
    }

    /// Drops points older than `retentionSeconds` (the latest always stays) and the undo data
    /// that only led back to them.
    @discardableResult
    public func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64 = Clock.nowNanos()) throws -> [Int] {
        try withLock(vm, exclusive: true) {
            var catalog = try StoreCatalog.load(catalogPath(vm))
            guard let latest = catalog.points.last else { return [] }
            let cutoff = nowNanos > UInt64(retentionSeconds * 1e9) ? nowNanos - UInt64(retentionSeconds * 1e9) : 0
            // A failover in progress keeps its point and every later one (it reads through their undo).
            let keepFrom = failoverState(vm)?.point.id ?? Int.max
            let expired = catalog.points.filter { $0.timeNanos < cutoff && $0.id != latest.id && $0.id < keepFrom }.map(\.id)
            catalog.points.removeAll { expired.contains($0.id) }
            try catalog.save(catalogPath(vm))
            // The oldest kept point's own undo leads to a pruned state: it goes too.
            let oldest = catalog.points.first!.id
            for name in try FileSystem.list(vmDirectory(vm) + "/points") {
                guard let id = Int(name.prefix(8)), id <= oldest, !name.hasSuffix(".pending") else { continue }
                try removeTree(vmDirectory(vm) + "/points/" + name)
            }
            return expired
        }
    }

    func resolve(_ selector: PointSelector, in catalog: StoreCatalog, vm: String) throws -> RecoveryPoint {
        let found: RecoveryPoint?
        switch selector {
        case .id(let id): found = catalog.points.first { $0.id == id }
        case .latest: found = catalog.points.last
        case .latestApp: found = catalog.points.last { $0.consistency == .app }
        }
        guard let found else {
            switch selector {
            case .id(let id): throw ReplicaError("recovery point \(id) not found for VM \(vm)")
            case .latest: throw ReplicaError("VM \(vm) has no recovery point yet")
            case .latestApp: throw ReplicaError("VM \(vm) has no app-consistent recovery point")
            }
        }
        return found
    }

    // MARK: undo data and crash recovery

    /// Saves the replica's current bytes of every range the logs will change, and its size,
    /// as an HRL log that restores them when applied in file order.
    func writeUndo(replica: String, scans: [LogScan], to path: String, disk: String, pointID: UInt64) throws {
        let oldSize = Int64(try FileSystem.stat(replica).st_size)
        // Every range the logs touch, from their scans; a size change may cut anything above
        // it. Saving more than strictly needed is harmless: each saved byte is pre-point state.
        var ranges = RangeSet()
        for scan in scans {
            scan.ranges.ranges.forEach { ranges.insert($0) }
            for size in scan.sizeChanges where Int64(size) < oldSize { ranges.insert(size..<UInt64(oldSize)) }
        }
        try writeUndo(replica: replica, ranges: ranges, to: path, disk: disk, pointID: pointID)
    }

    /// Saves the replica's current bytes of `ranges`, and its size, as an undo log.
    func writeUndo(replica: String, ranges unsorted: RangeSet, to path: String, disk: String, pointID: UInt64) throws {
        let fd = try FileDescriptor.open(replica, O_RDONLY)
        defer { fd.close() }
        let oldSize = try fd.size()
        var ranges = unsorted
        ranges.normalize()
        let undo = try DirectLogWriter(path: path, header: LogHeader(
            imageName: disk, chainID: [UInt8](repeating: 0, count: 16), sequence: pointID, firstLSN: 1,
            createdNanos: Clock.nowNanos(), imageSize: UInt64(oldSize)))
        for range in ranges.ranges {
            var at = Int64(range.lowerBound)
            let end = min(Int64(range.upperBound), oldSize)
            while at < end {
                let n = try undo.appendWrite(from: fd, offset: at, count: Int(min(Int64(DirectLogWriter.maxData), end - at)))
                guard n > 0 else { break }
                at += Int64(n)
            }
        }
        try undo.appendSetSize(UInt64(oldSize))
        try undo.seal(reason: .rotation, cutID: pointID)
    }

    func applyUndo(_ path: String, to target: FileDescriptor) throws {
        let scan = try LogScanner.scan(path) { header, data in
            // Pre-point bytes that are all zeros (mostly holes) are punched, not written: rolling
            // back an apply that filled the store then frees space instead of needing more.
            if header.type == .write, let first = data.first, first == 0, memcmp(data.baseAddress!, data.baseAddress! + 1, data.count - 1) == 0 {
                try LogApplier.zeroRange(target, offset: Int64(header.offset), length: Int64(data.count))
            } else {
                try LogApplier.applyRecord(header, data, to: target)
            }
        }
        guard scan.isSealed, scan.tail == .clean else { throw ReplicaError("\(path): damaged undo log (\(scan.tail))") }
    }

    /// Finishes or rolls back a commit a crash interrupted: a pending point the catalog lists is
    /// complete; one it does not list is undone on the replicas, so they are back at the last point.
    func recoverLocked(_ vm: String) throws {
        try rollBackInterruptedResyncLocked(vm)
        let catalog = try StoreCatalog.load(catalogPath(vm))
        for name in try FileSystem.list(vmDirectory(vm) + "/points") where name.hasSuffix(".pending") {
            guard let id = Int(name.prefix(8)) else { continue }
            let dir = vmDirectory(vm) + "/points/" + name
            if catalog.points.contains(where: { $0.id == id }) {
                guard rename(dir, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", dir) }
                continue
            }
            for file in try FileSystem.list(dir) where file.hasSuffix(".undo.hrl") {
                let disk = String(file.dropLast(".undo.hrl".count))
                // An undo log torn by the crash was written before any replica change: nothing to undo.
                guard let scan = try? LogScanner.scan(dir + "/" + file), scan.isSealed else { continue }
                let target = try FileDescriptor.open(replicaPath(vm, disk), O_RDWR)
                defer { target.close() }
                try applyUndo(dir + "/" + file, to: target)
                try target.fsync()
            }
            try removeTree(dir)
        }
    }

    /// Opens the store for a VM, repairing an interrupted commit.
    public func recover(vm: String) throws {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)") }
        try withLock(vm, exclusive: true) { try recoverLocked(vm) }
    }

    func withLock<T>(_ vm: String, exclusive: Bool, _ body: () throws -> T) throws -> T {
        let fd = try FileDescriptor.open(vmDirectory(vm) + "/.lock", O_RDWR | O_CREAT, mode: 0o600)
        defer { fd.close() }
        try fd.lock(exclusive: exclusive)
        return try body()
    }

    func removeTree(_ path: String) throws {
        for name in try FileSystem.list(path) {
            let child = path + "/" + name
            if FileSystem.isDirectory(child) { try removeTree(child) } else { try FileSystem.remove(child) }
        }
        if rmdir(path) != 0 && errno != ENOENT { throw SystemError.current("rmdir", path) }
    }
}
