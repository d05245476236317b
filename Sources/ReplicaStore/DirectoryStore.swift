import Dispatch
import Foundation
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The secondary site: per VM, base disks at the oldest recovery point kept, and per point the
/// shipped change logs that lead to it from the one before (redo logs). A point is the base
/// with the logs of every point after the base up to it applied in order; as points expire
/// their logs are merged into the base. A commit writes each shipped byte once. Layout, crash
/// rules and the reasons: docs/target-store.md.
public final class DirectoryStore: Sendable {
    public let root: String

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
    func basePath(_ vm: String, _ disk: String) -> String { vmDirectory(vm) + "/base/" + disk }
    func pointDirectory(_ vm: String, _ id: Int, pending: Bool = false) -> String {
        vmDirectory(vm) + "/points/" + String(id).leftPadded(8) + (pending ? ".pending" : "")
    }

    public func hasVM(_ vm: String) -> Bool { FileSystem.exists(catalogPath(vm)) }

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
        try FileSystem.mkdirs(vmDirectory(vm) + "/base")
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
            try SparseCopy.copy(from: source, to: basePath(vm, disk.name), resumeAt: disk.copiedTo) { n, reached in
                copied += n
                progress?(n)
                if reached - lastSaved >= 32 << 20 {
                    // Durable progress: the replica's bytes first, then the mark that says so.
                    if let fd = try? FileDescriptor.open(self.basePath(vm, disk.name), O_WRONLY) { try? fd.fdatasync(); fd.close() }
                    state.disks[i].copiedTo = reached
                    try? self.saveInitial(vm, state)
                    lastSaved = reached
                }
            }
            state.disks[i].done = true
            try saveInitial(vm, state)
        }
        try FileSystem.fsyncDirectory(vmDirectory(vm) + "/base")
        var catalog = StoreCatalog(vm: vm, disks: state.disks.map(\.name))
        catalog.baseThrough = 0
        for i in catalog.disks.indices {
            let d = state.disks[i]
            catalog.disks[i].size = Int64(try FileSystem.stat(basePath(vm, d.name)).st_size)
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
            for sub in ["base", "points", "incoming"] {
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
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", kind: .nonRecoverable, code: .unknownVM) }
        return try withLock(vm, exclusive: false) { try StoreCatalog.load(catalogPath(vm)) }
    }

    public func points(_ vm: String) throws -> [RecoveryPoint] { try catalog(vm).points }

    /// Verifies shipped logs (every checksum, one chain per disk continuing the last commit),
    /// stores them as the new point's redo logs and commits one recovery point for all the
    /// VM's disks. The base is not touched: each shipped byte is written once. Logs entirely
    /// before a disk's next LSN (already committed, sent again) are skipped. Test hook: with
    /// `REPLICAFS_FAULT=commit-after-copy` a test can hold it between storing the logs and
    /// saving the catalog (`FaultPoint`, docs/target-store.md).
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
            let id = catalog.nextPointID
            let pending = pointDirectory(vm, id, pending: true)
            if FileSystem.exists(pending) { try removeTree(pending) }
            try FileSystem.mkdirs(pending)
            // 1. Copy the logs into the pending directory while verifying them on this thread
            //    (verification reads from the page cache, the copy waits on the disk). Logs
            //    received into the store's incoming/ already are renamed instead, once verified.
            let incoming = vmDirectory(vm) + "/incoming/"
            var copies: [String: String] = [:]
            for path in logs.values.joined() where !path.hasPrefix(incoming) { copies[path] = pending + "/.copy-\(copies.count)" }
            let copier = BackgroundCopy(copies)
            var plans: [(index: Int, scans: [LogScan])] = []
            do {
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
                    guard !fresh.isEmpty else { continue }
                    let scans = try LogApplier(scans: fresh).scans
                    let first = scans[0].header
                    if let chain = entry.chain, chain != first.chainHex {
                        throw ReplicaError("\(scans[0].path): foreign log chain \(first.chainHex) for disk \(disk) (the replica follows \(chain)): resync required", kind: .resyncRequired)
                    }
                    if let next = entry.nextLSN, first.firstLSN != next {
                        throw ReplicaError("broken log chain for disk \(disk): replica expects LSN \(next), shipped logs start at \(first.firstLSN): resync required", kind: .resyncRequired)
                    }
                    guard scans.allSatisfy(\.isSealed) else {
                        throw ReplicaError("disk \(disk): shipped logs must be sealed", kind: .nonRecoverable)
                    }
                    plans.append((index, scans))
                }
                try copier.wait()
            } catch {
                try? copier.wait()
                try? removeTree(pending)
                throw error
            }
            // 2. The logs become the point's redo logs, durable before the catalog names the point.
            for plan in plans {
                let disk = catalog.disks[plan.index].name
                var size = try latestSize(vm, catalog.disks[plan.index])
                for (n, scan) in plan.scans.enumerated() {
                    let target = pending + "/" + Self.redoLogName(disk, n + 1)
                    if scan.path.hasPrefix(incoming) {
                        // Received into the store already (inflated there): keep that copy.
                        guard rename(scan.path, target) == 0 else { throw SystemError.current("rename", scan.path) }
                        let fd = try FileDescriptor.open(target, O_RDONLY)
                        defer { fd.close() }
                        try fd.fdatasync()
                    } else {
                        guard rename(copies[scan.path]!, target) == 0 else { throw SystemError.current("rename", target) }
                    }
                    size = scan.sizeAfter(size)
                }
                catalog.disks[plan.index].chain = plan.scans[0].header.chainHex
                catalog.disks[plan.index].nextLSN = plan.scans.last!.nextLSN
                catalog.disks[plan.index].size = size
            }
            // Copies of logs committed before (a resend) are not needed.
            for name in try FileSystem.list(pending) where name.hasPrefix(".copy-") { try FileSystem.remove(pending + "/" + name) }
            try FileSystem.fsyncDirectory(pending)
            // Test hook (off unless REPLICAFS_FAULT names it): the logs are stored in the pending
            // point, the catalog does not name it yet; a kill here must lose nothing committed.
            FaultPoint.reach("commit-after-copy")
            // 3. The catalog names the point (the commit point), then the pending mark goes.
            var sizes: [String: Int64] = [:]
            for disk in catalog.disks { sizes[disk.name] = try latestSize(vm, disk) }
            let point = RecoveryPoint(id: id, timeNanos: timeNanos, consistency: consistency, cut: cut, diskSizes: sizes)
            catalog.points.append(point)
            catalog.nextPointID = id + 1
            catalog.resync = nil // a finished resync's first consistent point
            try catalog.save(catalogPath(vm))
            guard rename(pending, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", pending) }
            return point
        }
    }

    /// Writes a disk's bytes as of `selector` to `destination`: the base, then the redo logs
    /// of every point after the base up to the selected one, in order.
    @discardableResult
    public func export(vm: String, point selector: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint {
        try export(vm: vm, point: selector, disk: disk, to: destination, progress: nil)
    }

    /// The export with progress: the base's bytes as they are copied, then each redo log's
    /// bytes as it is replayed.
    @discardableResult
    public func export(vm: String, point selector: PointSelector, disk: String, to destination: String,
                       progress: ((_ done: Int64, _ total: Int64) -> Void)?) throws -> RecoveryPoint {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", code: .unknownVM) }
        return try withLock(vm, exclusive: false) {
            let catalog = try StoreCatalog.load(catalogPath(vm))
            guard catalog.disks.contains(where: { $0.name == disk }) else {
                throw ReplicaError("disk \(disk) is not part of VM \(vm)")
            }
            let point = try resolve(selector, in: catalog, vm: vm)
            let logs = try redoLogs(vm, disk: disk, after: catalog.baseThrough ?? 0, through: point.id)
            guard let progress else {
                try SparseCopy.copy(from: basePath(vm, disk), to: destination)
                try Self.replay(logs, onto: destination)
                return point
            }
            let base = Int64(try FileSystem.stat(basePath(vm, disk)).st_size)
            let logSizes = try logs.map { Int64(try FileSystem.stat($0).st_size) }
            let total = base + logSizes.reduce(0, +)
            progress(0, total)
            try SparseCopy.copy(from: basePath(vm, disk), to: destination) { _, at in progress(at, total) }
            var done = base
            progress(done, total)
            for (log, size) in zip(logs, logSizes) {
                try Self.replay([log], onto: destination)
                done += size
                progress(done, total)
            }
            return point
        }
    }

    /// Drops points older than `retentionSeconds` (the latest always stays, and so does every
    /// point from a failover's on) and merges their redo logs into the base.
    @discardableResult
    public func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64 = Clock.nowNanos()) throws -> [Int] {
        try withLock(vm, exclusive: true) {
            var catalog = try StoreCatalog.load(catalogPath(vm))
            guard let latest = catalog.points.last else { return [] }
            // Clamped: a stored retention of any size (or NaN) must not trap the daemon.
            let keep = TimeLimits.clampedNanos(seconds: retentionSeconds)
            let cutoff = nowNanos > keep ? nowNanos - keep : 0
            // A failover in progress keeps its point and every later one.
            let keepFrom = failoverState(vm)?.point.id ?? Int.max
            let expired = catalog.points.filter { $0.timeNanos < cutoff && $0.id != latest.id && $0.id < keepFrom }.map(\.id)
            guard !expired.isEmpty else { return [] }
            catalog.points.removeAll { expired.contains($0.id) }
            try catalog.save(catalogPath(vm))
            try mergeLocked(vm, through: catalog.points.first!.id)
            return expired
        }
    }

    /// Brings the base to point `id` (the oldest point kept): applies the redo logs of the
    /// points up to it, syncs the base, records it in the catalog, then deletes those logs.
    /// Crash-safe without a mark: until the catalog says so, every reader still applies those
    /// logs over the base, and replaying a log over a base it was partly merged into gives the
    /// same bytes; the next prune merges again.
    func mergeLocked(_ vm: String, through id: Int) throws {
        var catalog = try StoreCatalog.load(catalogPath(vm))
        let from = catalog.baseThrough ?? 0
        if id > from {
            for disk in catalog.disks.map(\.name) {
                let logs = try redoLogs(vm, disk: disk, after: from, through: id)
                if !logs.isEmpty { try Self.replay(logs, onto: basePath(vm, disk)) }
            }
            catalog.baseThrough = id
            try catalog.save(catalogPath(vm))
        }
        for name in try FileSystem.list(vmDirectory(vm) + "/points") {
            guard let n = Int(name.prefix(8)), n <= id, !name.hasSuffix(".pending") else { continue }
            try removeTree(vmDirectory(vm) + "/points/" + name)
        }
    }

    func resolve(_ selector: PointSelector, in catalog: StoreCatalog, vm: String) throws -> RecoveryPoint {
        try catalog.point(selector, vm: vm)
    }

    // MARK: redo logs and crash recovery

    static func redoLogName(_ disk: String, _ n: Int) -> String { disk + "." + String(n).leftPadded(6) + ".hrl" }

    /// The redo logs of `disk` in one point directory, in apply order.
    func redoLogs(inDirectory dir: String, disk: String) throws -> [String] {
        try FileSystem.list(dir).filter { name in
            guard name.hasPrefix(disk + "."), name.hasSuffix(".hrl") else { return false }
            let middle = name.dropFirst(disk.count + 1).dropLast(4)
            return middle.count == 6 && middle.allSatisfy(\.isNumber)
        }.sorted().map { dir + "/" + $0 }
    }

    /// Every redo log of `disk` from the base's point (exclusive) to point `id` (inclusive),
    /// in apply order: point by point, a resync that preceded a point before the point's own.
    func redoLogs(_ vm: String, disk: String, after from: Int, through id: Int) throws -> [String] {
        guard id > from else { return [] }
        var logs: [String] = []
        for n in (from + 1)...id {
            let point = pointDirectory(vm, n)
            guard FileSystem.isDirectory(point) else {
                throw ReplicaError("redo logs of point \(n) of VM \(vm) are missing: cannot reach point \(id)")
            }
            let resync = resyncDirectory(vm, n)
            if FileSystem.isDirectory(resync) { logs += try redoLogs(inDirectory: resync, disk: disk) }
            logs += try redoLogs(inDirectory: point, disk: disk)
        }
        return logs
    }

    /// The disk's size as of the newest change the store holds.
    func latestSize(_ vm: String, _ disk: StoreCatalog.Disk) throws -> Int64 {
        try disk.size ?? Int64(FileSystem.stat(basePath(vm, disk.name)).st_size)
    }

    /// Applies every record of sealed, undamaged logs to `target`, in order, and syncs it.
    static func replay(_ logs: [String], onto target: String) throws {
        let fd = try FileDescriptor.open(target, O_RDWR)
        defer { fd.close() }
        for path in logs {
            let scan = try LogScanner.scan(path) { header, data in try LogApplier.applyRecord(header, data, to: fd) }
            guard scan.isSealed, scan.tail == .clean else { throw ReplicaError("\(path): damaged redo log (\(scan.tail))") }
        }
        try fd.fsync()
    }

    /// Finishes or drops a commit a crash interrupted: a pending point the catalog lists is
    /// complete; one it does not list never was, and the base was not touched by it.
    func recoverLocked(_ vm: String) throws {
        try rollBackInterruptedResyncLocked(vm)
        let catalog = try StoreCatalog.load(catalogPath(vm))
        for name in try FileSystem.list(vmDirectory(vm) + "/points") where name.hasSuffix(".pending") {
            guard let id = Int(name.prefix(8)) else { continue }
            let dir = vmDirectory(vm) + "/points/" + name
            if catalog.points.contains(where: { $0.id == id }) {
                guard rename(dir, pointDirectory(vm, id)) == 0 else { throw SystemError.current("rename", dir) }
            } else {
                try removeTree(dir)
            }
        }
    }

    /// Opens the store for a VM, repairing an interrupted commit.
    public func recover(vm: String) throws {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(root)", code: .unknownVM) }
        try withLock(vm, exclusive: true) { try recoverLocked(vm) }
    }

    public func withLock<T>(_ vm: String, exclusive: Bool, _ body: () throws -> T) throws -> T {
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

/// Copies files on a thread of its own while the caller goes on (a commit's verification).
// @unchecked: `failure` is written by the copy thread under `lock` and read after `group.wait()`.
private final class BackgroundCopy: @unchecked Sendable {
    private let group = DispatchGroup()
    private let lock = Lock()
    private var failure: Error?

    /// Starts copying each source to its destination, in turn, with direct writes.
    public init(_ copies: [String: String]) {
        guard !copies.isEmpty else { return }
        let work = copies.sorted { $0.key < $1.key }
        DispatchQueue.global().async(group: group) {
            for (source, destination) in work {
                do {
                    try DirectLogWriter.copy(source, to: destination)
                } catch {
                    self.lock.withLock { self.failure = error }
                    return
                }
            }
        }
    }

    /// Waits for the copies; throws the first failure.
    public func wait() throws {
        group.wait()
        if let failure = lock.withLock({ failure }) { throw failure }
    }
}
