import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Failover, failback, reprotect and their cleanup as library calls: the protocol steps of
/// docs/failover.md against a `TargetStore`, with the mount daemons started and stopped
/// through `FailoverMounts`. The CLI commands and `plan` call these; each step throws a
/// `ReplicaError` with a code and the operator's message.
public final class FailoverCoordinator {
    public let store: any TargetStore
    public let mounts: any FailoverMounts
    let registry: MountRegistry
    /// Progress lines (failback and reprotect steps).
    let say: (String) -> Void
    /// Bytes of a disk copy as they go (reprotect and failback): a label, bytes done, bytes in all.
    public var copyProgress: ((String, Int64, Int64) -> Void)?
    /// How reprotect and failback reach an original site on another host (`replicafs://`): its PKI.
    public var siteOptions = TargetOptions()
    /// How the store was opened (its PKI, object-store access): recorded with a failover
    /// started here, so `failover remount` opens the store the same way.
    public var storeOptions = TargetOptions()

    public enum FailbackMode: String, Codable, Sendable, CaseIterable {
        case minimizeDowntime = "minimize-downtime"
        case fullDownload = "full-download"
    }

    /// A failover once its mount serves.
    public struct Started: Sendable {
        public var state: FailoverState
        public var mount: LaunchedMount
    }

    public init(store: any TargetStore, mounts: any FailoverMounts, registry: MountRegistry = MountRegistry(),
                progress: @escaping (String) -> Void = { _ in }) {
        self.store = store
        self.mounts = mounts
        self.registry = registry
        self.say = progress
    }

    // MARK: failover

    /// Parses a point: an id, latest, latest-app, or an ISO 8601 time (the last point at or before it).
    public func pointSelector(_ text: String, vm: String) throws -> PointSelector {
        if let date = ISOTime.parse(text) {
            _ = try TimeLimits.nanos(ofTime: date.timeIntervalSince1970, text: text)
            // To the millisecond, as `points` shows times: the time a point is listed with
            // selects that point (its nanoseconds lie within the millisecond shown).
            let ms = UInt64((date.timeIntervalSince1970 * 1000).rounded())
            let nanos = ms * 1_000_000 + 999_999
            guard let p = try store.points(vm).last(where: { $0.timeNanos <= nanos }) else {
                throw ReplicaError("VM \(vm) has no recovery point at or before \(text)", code: .badRequest)
            }
            return .id(p.id)
        }
        if text.contains("-") && text.contains(":") {
            throw ReplicaError("bad point time '\(text)': not a valid ISO-8601 time (use one such as 2026-11-23T18:30:00Z)", code: .badRequest)
        }
        return try PointSelector(text)
    }

    /// Fails `vm` over to `point` and mounts its disks on `mountpoint`. Planned: stops the
    /// source's writes first (its running mount, or the stopped disks in `disksDir`) and ships
    /// everything it logged as the final point. `networks` (a recovery plan's mapping) is
    /// shown beside the disks. The failover's own files go to `workDirectory` (default: the
    /// store's `localFailoverDirectory`). On a failure nothing is left behind but a stopped source.
    public func failover(vm: String, point: String = "latest", kind: FailoverState.Kind, mountpoint: String,
                         disksDir: String? = nil, networks: FailoverNetworks? = nil, workDirectory: String? = nil) throws -> Started {
        try store.requireVM(vm)
        if let existing = store.failoverState(vm) {
            throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first", code: .alreadyFailedOver)
        }
        var selector = try pointSelector(point, vm: vm)
        let mp = try mounts.checkMountpoint(mountpoint)
        guard let work = workDirectory.map(absolute) ?? store.localFailoverDirectory(vm: vm) else {
            throw ReplicaError("target store \(store.location) is not on this host: give the failover a working directory (--work-dir)", code: .badRequest)
        }
        if workDirectory != nil, FileSystem.exists(work), !((try? FileSystem.list(work)) ?? []).isEmpty {
            throw ReplicaError("working directory \(work) is not empty", code: .badRequest)
        }
        var source = try disksDir.map { try FileSystem.realPath($0) }
        if kind == .planned {
            guard point == "latest" else {
                throw ReplicaError("a planned failover goes to the final point it ships: leave --point out", code: .badRequest)
            }
            source = try stopSource(vm: vm, given: source)
            do {
                selector = .id(try shipFinalLogs(vm: vm, disksDir: source!).id)
            } catch {
                throw ReplicaError("planned failover: the source at \(source!) is stopped but its last changes could not be shipped: \(error); mount it again to resume protection", code: .stepFailed)
            }
        }
        let state = try store.beginFailover(vm: vm, point: selector, kind: kind, mountpoint: mp, sourceDisksDir: source,
                                            workDirectory: work)
        do {
            if let networks {
                try FileSystem.mkdirs(state.workDirectory)
                try networks.save(in: state.workDirectory)
            }
            let launched = try mounts.launchFailoverMount(vm: vm, store: store, mountpoint: mp)
            registerFailover(state)
            FailoverEvents.record(state, vm: vm, .failover, level: kind == .test ? .normal : .warning,
                                  "\(kind.rawValue) failover to point \(state.point.id) mounted on \(mp)", point: state.point.id)
            return Started(state: state, mount: launched)
        } catch {
            try? discard(state)
            throw error
        }
    }

    /// Stops a planned failover's source: asks its running mount to ship what it logged, then
    /// unmounts it. Returns the source's disks directory.
    func stopSource(vm: String, given: String?) throws -> String {
        let running = registry.all().first { entry in
            MountRegistry.isAlive(entry.pid) && ProtectedVM.all(disksDir: entry.disksDir).contains { $0.name == vm }
        }
        guard let running else {
            guard let given else {
                throw ReplicaError("--planned: no running mount protects VM \(vm); give --disks-dir with the source's disks directory", code: .badRequest)
            }
            return given
        }
        // Ship what is logged while the source still runs: the final delta stays small.
        let response = try ControlClient.call(socket: running.socket, pid: running.pid, ControlRequest(op: .snapshot, vm: vm))
        guard response.ok else {
            throw ReplicaError("planned failover: the source could not ship its changes: \(response.error ?? "?")", code: .stepFailed)
        }
        do {
            try mounts.stopMount(running.mountpoint)
        } catch {
            throw ReplicaError("planned failover: cannot stop the source mount \(running.mountpoint): \(error); shut the VM down first", code: .stepFailed)
        }
        return running.disksDir
    }

    /// Commits every change log a stopped source left in `disksDir` for the VM's disks as one
    /// crash-consistent point (all must be sealed: a clean unmount seals them), then deletes
    /// them there.
    public func shipFinalLogs(vm: String, disksDir: String) throws -> RecoveryPoint {
        var logs: [String: [SourceFile]] = [:]
        for disk in try store.catalog(vm).disks.map(\.name) {
            let found = try SourceLogs.list(in: disksDir, of: [disk])
            if !found.isEmpty { logs[disk] = found.map(SourceFile.init) }
        }
        // A receiver on another host commits only logs it was sent first (a local store reads them here).
        let received = try store.receive(vm: vm, logs: logs, compress: false).logs
        let point = try store.commit(vm: vm, logs: received, consistency: .crash, cut: 0, timeNanos: Clock.nowNanos())
        for file in logs.values.joined() { try FileSystem.remove(file.localPath) }
        return point
    }

    /// Ends a test (or uncommitted) failover: unmounts it and discards its writes.
    @discardableResult
    public func cleanup(vm: String) throws -> FailoverState {
        try store.requireVM(vm)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to clean up", code: .notFailedOver) }
        guard !state.committed else {
            throw ReplicaError("the failover of VM \(vm) is committed: fail back instead of cleaning up", code: .badRequest)
        }
        if let to = state.reverseTo {
            // The original disks already hold failed-over writes the store never saw.
            throw ReplicaError("VM \(vm) was reprotected towards \(to): fail back instead of cleaning up", code: .badRequest)
        }
        if mounts.isMounted(state.mountpoint) { try mounts.stopMount(state.mountpoint) }
        try discard(state)
        unregisterFailover(vm)
        FailoverEvents.record(state, vm: vm, .failover, "\(state.kind.rawValue) failover to point \(state.point.id) cleaned up: its writes are discarded", point: state.point.id)
        return state
    }

    /// Makes a planned or unplanned failover's point final.
    @discardableResult
    public func commit(vm: String) throws -> FailoverState {
        try store.requireVM(vm)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to commit", code: .notFailedOver) }
        guard state.kind != .test else {
            throw ReplicaError("VM \(vm) is in a test failover: it cannot be committed, only cleaned up", code: .badRequest)
        }
        let committed = try store.commitFailover(vm: vm)
        FailoverEvents.record(committed, vm: vm, .failover, "\(state.kind.rawValue) failover committed at point \(state.point.id)", point: state.point.id)
        return committed
    }

    /// Mounts a failover again after its daemon died or the machine restarted.
    public func remount(vm: String) throws -> Started {
        try store.requireVM(vm)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to remount", code: .notFailedOver) }
        _ = try mounts.checkMountpoint(state.mountpoint)
        let started = Started(state: state, mount: try mounts.launchFailoverMount(vm: vm, store: store, mountpoint: state.mountpoint))
        FailoverEvents.record(state, vm: vm, .failover, "\(state.kind.rawValue) failover remounted on \(state.mountpoint)", point: state.point.id)
        registerFailover(state)
        return started
    }

    /// `path` made absolute against the current directory (a daemon may run elsewhere).
    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// The store forgets the failover, and its working files go.
    func discard(_ state: FailoverState) throws {
        try store.discardFailover(vm: state.vm)
        if FileSystem.isDirectory(state.workDirectory) { try FileSystem.removeTree(state.workDirectory) }
    }

    // MARK: reprotect and failback

    /// The failover of `vm` that reprotect and failback work on, and the disks directory they
    /// write to (created if it is gone: failing back to a new machine).
    public func failedOver(vm: String, to: String?) throws -> (FailoverState, String) {
        try store.requireVM(vm)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) is not failed over", code: .notFailedOver) }
        guard state.kind != .test else {
            throw ReplicaError("VM \(vm) is in a test failover: `replicafs failover cleanup \(vm) --target \(store.location)` ends it; only a real failover fails back", code: .badRequest)
        }
        guard let dir = to ?? state.reverseTo ?? state.sourceDisksDir else {
            throw ReplicaError("the original site of VM \(vm) is not known: run it again with --disks-dir <dir> (the directory to bring the disks to)", code: .badRequest)
        }
        guard let entry = registry.lookup(state.mountpoint), MountRegistry.isAlive(entry.pid) else {
            throw ReplicaError("the failover mount of VM \(vm) on \(state.mountpoint) is not running: `replicafs failover remount \(vm) --target \(store.location)`", code: .mountNotRunning)
        }
        // On another host: its `serve --disks-dir` confines every name to that directory.
        if OriginalSites.isRemote(dir) { return (state, try OriginalSites.open(dir, options: siteOptions(state)).location) }
        let real = FileSystem.exists(dir) ? try FileSystem.realPath(dir) : dir
        if let running = registry.all().first(where: { MountRegistry.isAlive($0.pid) && $0.disksDir == real }) {
            throw ReplicaError("\(real) is still served by the replicafs mount on \(running.mountpoint): `replicafs unmount \(running.mountpoint)` first", code: .badRequest)
        }
        // Checked: now the destination may be created (failing back to a new machine).
        try FileSystem.mkdirs(dir)
        return (state, try FileSystem.realPath(dir))
    }

    /// How to reach the original site of `state`: `siteOptions`, else the PKI reprotect used.
    func siteOptions(_ state: FailoverState) -> TargetOptions {
        var options = siteOptions
        if options.pki == nil { options.pki = state.reversePKI }
        return options
    }

    /// Asks the failover mount's daemon to do `op`.
    func control(_ state: FailoverState, _ op: ControlRequest.Operation) throws -> ControlResponse {
        guard let entry = registry.lookup(state.mountpoint), MountRegistry.isAlive(entry.pid) else {
            throw ReplicaError("\(state.mountpoint) is not served by a running replicafs daemon", code: .mountNotRunning)
        }
        let response = try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: op))
        guard response.ok else { throw ReplicaError(response.error ?? "the daemon refused \(op.rawValue)") }
        return response
    }

    /// Reverse replication after a planned or unplanned failover: from a cut on, the failover
    /// mount logs every change; the original site's disks are made equal block by block
    /// (only differing blocks travel), then the logs since the cut are shipped, and from then
    /// on every `copyInterval` seconds.
    public func reprotect(vm: String, to: String?, blockSize: Int = 1 << 20, copyInterval: Double = 30) throws
        -> (report: ReverseSyncReport, fromLogs: Int64, destination: String) {
        var (state, destination) = try failedOver(vm: vm, to: to)
        state.reverseTo = destination
        state.reversePKI = OriginalSites.isRemote(destination) ? siteOptions.pki.map(absolute) : nil
        state.reverseReady = false
        state.reverseInterval = max(1, copyInterval)
        try store.saveFailover(state)
        // The cut: from here on every change is logged; the block copy below may be fuzzy,
        // the logs shipped after it make the original site exact.
        _ = try control(state, .reprotect)
        var report = try reverseSync(state, to: destination, blockSize: blockSize, step: "reprotect")
        let shipped = try control(state, .ship).shippedBytes ?? 0
        report.sent += shipped
        state = store.failoverState(vm) ?? state
        state.reverseReady = true
        state.reverseSyncs += 1
        state.reverseBytesSent += report.sent
        state.lastReverseSync = ISOTime.format(Date())
        try store.saveFailover(state)
        FailoverEvents.record(state, vm: vm, .failback, "reprotected towards \(destination): \(report.sent) bytes sent", bytes: report.sent)
        return (report, shipped, destination)
    }

    /// Abandons a failback that stopped after freezing the failover mount: it takes writes again.
    @discardableResult
    public func abortFailback(vm: String) throws -> FailoverState {
        guard store.hasVM(vm), let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) is not failed over", code: .notFailedOver) }
        _ = try control(state, .unfreeze)
        FailoverEvents.record(state, vm: vm, .failback, "failback aborted: the failover mount takes writes again")
        return state
    }

    /// Brings a failed-over VM home: minimize-downtime copies the differing blocks while the
    /// VM runs, then stops its writes (freeze) and copies the final delta; full-download stops
    /// the writes first and copies whole disks. Then the switch: the failover mount goes, the
    /// store's replica is rebased on the disks now at home (earlier points kept).
    public func failback(vm: String, mode: FailbackMode, to: String?, blockSize: Int = 1 << 20) throws -> FailbackReport {
        let started = Date()
        var (state, destination) = try failedOver(vm: vm, to: to)
        let again = "`replicafs failback \(vm) --target \(store.location) --mode \(mode.rawValue)\(to.map { " --disks-dir \($0)" } ?? "")`"
        // Reprotected: the reverse logs carry every change since the original site was synced.
        let viaLogs = state.reverseReady && state.reverseTo == destination
        // 1. While the VM runs: bring the original site close (minimize-downtime only).
        var running = ReverseSyncReport()
        if mode == .minimizeDowntime {
            if viaLogs {
                say("failback step 1/4: shipping the change logs while VM \(vm) keeps running")
                running.sent = try control(state, .ship).shippedBytes ?? 0
            } else {
                say("failback step 1/4: copying differing blocks while VM \(vm) keeps running")
                running = try reverseSync(state, to: destination, blockSize: blockSize, step: "failback")
            }
        }
        // 2. Stop the VM's writes: push the kernel's cached writes through, then freeze.
        say("failback step 2/4: stopping writes on \(state.mountpoint)")
        // A process or a mounted loop device on a disk would see its writes fail: refuse first.
        try requireDisksUnused(state, again: again)
        let downtimeStart = Date()
        do {
            try FileSystem.fsync(state.disks, in: state.mountpoint)
            _ = try control(state, .freeze)
        } catch {
            _ = try? control(state, .unfreeze)
            throw ReplicaError("failback step 2 (stop writes) failed: \(error); the VM keeps running on the failover mount: run \(again)", code: .stepFailed)
        }
        // 3. The final delta (or every byte).
        say("failback step 3/4: copying the final changes")
        var final = ReverseSyncReport()
        do {
            if mode == .minimizeDowntime && viaLogs {
                final.sent = try control(state, .ship).shippedBytes ?? 0
            } else {
                final = try reverseSync(state, to: destination, blockSize: blockSize, step: "failback", fullCopy: mode == .fullDownload)
            }
        } catch {
            throw ReplicaError("failback step 3 (final copy) failed: \(error); the failover mount is frozen: run \(again) to retry, or `replicafs failback \(vm) --target \(store.location) --abort` to let the VM write there again", code: .stepFailed)
        }
        // A VM still running wrote after the freeze: those writes were refused, not copied.
        _ = try? FileSystem.fsync(state.disks, in: state.mountpoint)
        let refused = (try? control(state, .status).failover)?.disks.reduce(0) { $0 + $1.refusedWrites } ?? 0
        guard refused == 0 else {
            throw ReplicaError("failback stopped before the switch: \(refused) writes were refused after the freeze, so the VM is still running on \(state.mountpoint): shut it down, then run \(again) (or `replicafs failback \(vm) --target \(store.location) --abort` to let it write there again)", code: .stepFailed)
        }
        // 4. Switch: the failover mount goes, the replica follows the disks now at home.
        say("failback step 4/4: switching VM \(vm) back to \(destination)")
        var point: RecoveryPoint
        var downtimeEnd = Date()
        let site = try OriginalSites.open(destination, options: siteOptions(state))
        // Across hosts the disks at home are not readable here: the frozen failover disks,
        // equal to them now, are what the replica is rebased on.
        var rebased: RecoveryPoint?
        if site.localDirectory == nil {
            var sources: [String: SourceFile] = [:]
            for d in state.disks { sources[d] = SourceFile(state.mountpoint + "/" + d) }
            do {
                rebased = try store.rebase(vm: vm, sources: sources, blockSize: blockSize).0
            } catch {
                throw ReplicaError("failback step 4 (switch) failed: \(error); the failover mount is still frozen: run \(again) to retry, or `replicafs failback \(vm) --target \(store.location) --abort` to let the VM write there again", code: .stepFailed)
            }
        }
        do {
            try mounts.stopMount(state.mountpoint)
            // The disks at home are complete and nothing else writes them: the VM may start there.
            downtimeEnd = Date()
            try site.removeSourceLogs(of: state.disks)
            if let rebased {
                point = rebased
            } else {
                var sources: [String: SourceFile] = [:]
                for d in state.disks { sources[d] = SourceFile(destination + "/" + d) }
                (point, _) = try store.rebase(vm: vm, sources: sources, blockSize: blockSize)
            }
            // The disks were written here, not through a mount: that is not a change behind
            // the replica's back (the rebase made the replica equal them).
            if site.localDirectory != nil { try ResyncScheduler.recordFingerprints(disksDir: destination, images: state.disks) }
            if site.localDirectory != nil, !ProtectedVM.all(disksDir: destination).contains(where: { $0.name == vm }) {
                // Failing back to a new location: protection goes with the disks.
                try ProtectedVM(name: vm, disks: state.disks, target: store.location, policy: ReplicationPolicy()).save(disksDir: destination)
            }
            try discard(state)
            unregisterFailover(vm, failedBackTo: destination)
        } catch {
            throw ReplicaError("failback step 4 (switch) failed: \(error); the disks at \(destination) are complete: `replicafs failover remount \(vm) --target \(store.location)`, then run failback again", code: .stepFailed)
        }
        state.reverseTo = destination
        FailoverEvents.record(state, vm: vm, .failback, "failed back (\(mode.rawValue)) to \(destination) at point \(point.id): \(running.sent + final.sent) bytes sent",
                              point: point.id, bytes: running.sent + final.sent, disksDir: destination)
        let diskBytes = try state.disks.reduce(Int64(0)) { $0 + (try site.size(of: $1)) }
        return FailbackReport(vm: vm, mode: mode.rawValue, to: destination, bytesSentRunning: running.sent, bytesSentFinal: final.sent,
                              bytesSent: running.sent + final.sent, diskBytes: diskBytes,
                              downtimeSeconds: downtimeEnd.timeIntervalSince(downtimeStart), seconds: Date().timeIntervalSince(started),
                              point: point.id)
    }

    /// Makes the original site's disks equal the failed-over disks, block by block, sending only
    /// blocks whose SHA-256 differs (or, `fullCopy`, every byte).
    func reverseSync(_ state: FailoverState, to destination: String, blockSize: Int, step: String,
                     fullCopy: Bool = false) throws -> ReverseSyncReport {
        let started = Date()
        var report = ReverseSyncReport()
        let site = try OriginalSites.open(destination, options: siteOptions(state))
        for disk in state.disks {
            let source = state.mountpoint + "/" + disk
            if fullCopy {
                // Whole disk, no comparison: every byte travels.
                let total = Int64((try? FileSystem.stat(source).st_size) ?? 0)
                let n = try site.copy(disk: disk, from: source) { _, at in self.copyProgress?("\(step) \(disk)", at, total) }
                copyProgress?("\(step) \(disk)", total, total)
                report.disks[disk] = ReverseSyncReport.DiskSync(compared: 0, sent: n, differingBlocks: nil)
                report.sent += n
                if copyProgress == nil { say("\(step): \(disk) 100%, \(n) bytes sent") }
                continue
            }
            var lastShown = Date.distantPast
            let r = try site.sync(disk: disk, from: source, blockSize: blockSize) { p in
                // A progress consumer (the command's bar or lines) replaces the percent lines.
                if let show = self.copyProgress { return show("\(step) \(disk)", p.bytesDone, p.bytesTotal) }
                guard Date().timeIntervalSince(lastShown) >= 1 || p.bytesDone == p.bytesTotal else { return }
                lastShown = Date()
                let pct = p.bytesTotal > 0 ? Double(p.bytesDone) * 100 / Double(p.bytesTotal) : 100
                self.say("\(step): \(disk) \(String(format: "%.0f", pct))%, \(p.bytesSent) bytes sent")
            }
            report.disks[disk] = ReverseSyncReport.DiskSync(compared: r.bytesCompared, sent: r.bytesSent, differingBlocks: r.differingBlocks)
            report.compared += r.bytesCompared
            report.sent += r.bytesSent
        }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}
