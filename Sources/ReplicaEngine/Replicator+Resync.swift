import Foundation
import ReplicaLog
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// What `replicafs resync` gets back.
public struct ResyncOutcome: Codable, Sendable {
    public var vm: String
    /// "resync required" (waiting for the window) or "resynchronized".
    public var state: ReplicationState
    public var reason: String?
    public var window: String?
    public var report: ResyncReport?
    /// The consistent point committed right after the resync.
    public var point: RecoveryPoint?
}

/// Resync in the replicator: the same fuzzy-copy-then-replay scheme as initial replication
/// (flush, cut the logs, copy, start the chain at the new logs), but copying only the blocks
/// whose checksums differ, into a replica that keeps its recovery points.
extension Replicator {
    /// Called by `tick` for a VM that has a replica. True when a resync owns the VM this tick
    /// (required and waiting for its window, or just run): ordinary cycles wait meanwhile.
    func resyncIfNeeded(_ vm: ProtectedVM, _ store: any TargetStore) throws -> Bool {
        let now = Self.now()
        let behind = vmStates.first { $0.vm == vm.name }?.lastError != nil
        resync.checkTriggers(vm, journals: vm.disks.compactMap { disks.journal(named: $0) }, behind: behind, now: now)
        guard let requirement = resync.requirement(vm.name) else { return false }
        guard ResyncScheduler.windowOpen(vm.policy, requirement) else {
            update(vm.name) {
                $0.state = .resyncRequired
                $0.resyncReason = requirement.reason + " (waiting for the resync window \(vm.policy.resyncWindow ?? ResyncScheduler.defaultWindow))"
                $0.resyncPercent = nil
            }
            return true
        }
        guard resync.mayAttempt(vm.name, now: now) else { return true }
        _ = try cycleLock.withLock { try runResyncLocked(vm, store) }
        return true
    }

    /// `replicafs resync <vm> [--now]`: marks the VM; with `now`, runs the resync at once and
    /// returns after the first consistent point after it is committed.
    public func requestResync(_ name: String, now: Bool) throws -> ResyncOutcome {
        guard let vm = ProtectedVM.all(disksDir: disks.directory).first(where: { $0.name == name }) else {
            throw ReplicaError("VM \(name) is not protected on \(disks.directory)")
        }
        let store = try bandwidth.openStore(vm)
        guard store.hasVM(vm.name) else {
            throw ReplicaError("VM \(name) has no replica yet: its initial replication copies every disk")
        }
        resync.require(name, reason: "requested by hand", now: now)
        let window = vm.policy.resyncWindow ?? ResyncScheduler.defaultWindow
        guard now else {
            return ResyncOutcome(vm: name, state: .resyncRequired, reason: resync.requirement(name)?.reason, window: window)
        }
        let (report, point) = try cycleLock.withLock { try runResyncLocked(vm, store) }
        // A resync by hand is an administrator acting, as `resume` is: it ends Critical too.
        if report != nil, health.resume(name) { health.succeeded(name, now: Self.now(), cycle: false) }
        return ResyncOutcome(vm: name, state: .resynchronized, reason: nil, window: window, report: report, point: point)
    }

    /// Before an explicit snapshot: a required resync runs first if it may, otherwise the
    /// snapshot is refused (no point from a replica that may have drifted). Caller holds the cycle lock.
    func resyncBeforeSnapshotLocked(_ vm: ProtectedVM, _ store: any TargetStore) throws {
        guard store.hasVM(vm.name), let requirement = resync.requirement(vm.name) else { return }
        guard ResyncScheduler.windowOpen(vm.policy, requirement) else {
            throw ReplicaError("VM \(vm.name) needs a resync (\(requirement.reason)); it runs in the window \(vm.policy.resyncWindow ?? ResyncScheduler.defaultWindow), or now with: replicafs resync \(vm.name) --now", kind: .waitingForResync)
        }
        _ = try runResyncLocked(vm, store)
    }

    /// The resync itself. Caller holds the cycle lock. Returns the store's report and the
    /// point committed right after (nil if that commit failed: the next cycle makes it).
    func runResyncLocked(_ vm: ProtectedVM, _ store: any TargetStore) throws -> (ResyncReport?, RecoveryPoint?) {
        // Someone else (the schedule, or another request) may have done it while this one waited.
        guard let requirement = resync.requirement(vm.name) else { return (resync.lastReport(vm.name), nil) }
        resync.noteAttempt(vm.name, now: Self.now())
        let journals = try vm.disks.map { disk -> ImageJournal in
            guard let j = disks.journal(named: disk) else { throw ReplicaError("disk \(disk) of VM \(vm.name) is not in \(disks.directory)") }
            return j
        }
        update(vm.name) { $0.state = .resynchronizing; $0.resyncPercent = 0; $0.resyncReason = requirement.reason }
        events.record(.init(vm: vm.name, kind: .resync, level: .warning, message: "resync started: \(requirement.reason)"))
        let report: ResyncReport
        var chains: [String: (chain: String, nextLSN: UInt64)] = [:]
        do {
            // The cut: every write after it is in the new logs, which the next commit replays
            // over the (fuzzy) copy; every write before it must be in the images first.
            try flushImages(vm.disks)
            streamer.publish(vm, store: nil)
            let rotation = try streamer.aroundCut { try disks.rotate(only: Set(vm.disks)) }
            // The copy replaces the logs before this cut: what was sent of them ahead of it (by
            // this daemon or one before a crash) will never be committed.
            streamer.forget(rotation.sealed)
            store.discardReceived(vm: vm.name)
            var sources: [String: String] = [:]
            for j in journals {
                // The new chain starts at this cut and the copy covers all before it.
                j.restartChain()
                let active = j.activeLog
                chains[j.name] = (active.chain, active.firstLSN)
                j.waitForWrites(before: active.firstLSN)
                sources[j.name] = j.image.path
            }
            report = try store.resync(vm: vm.name, sources: SourceFile.map(sources), chains: chains, reason: requirement.reason, blockSize: 1 << 20) { p in
                self.update(vm.name) {
                    $0.resyncPercent = p.bytesTotal > 0 ? min(100, Double(p.bytesDone) * 100 / Double(p.bytesTotal)) : 100
                }
            }
        } catch {
            update(vm.name) {
                $0.state = .resyncRequired
                $0.resyncPercent = nil
                $0.lastError = "resync failed (retried in \(Int(ResyncScheduler.retrySeconds)) s): \(error)"
            }
            events.record(.init(vm: vm.name, kind: .error, level: .warning, message: "resync failed (retried in \(Int(ResyncScheduler.retrySeconds)) s): \(error)"))
            throw error
        }
        // The logs cut before the copy are in the replica now: they need not travel.
        for j in journals {
            for path in (try? j.sealedLogs()) ?? [] {
                if let scan = try? LogScanner.scan(path), scan.nextLSN <= chains[j.name]!.nextLSN { try? reaper.retire(path) }
            }
        }
        resync.satisfied(vm.name, report: report)
        events.record(.init(vm: vm.name, kind: .resync, message: "resync ended: sent \(report.bytesSent) of \(report.diskBytes) bytes in \(String(format: "%.2f", report.seconds)) s",
                            bytes: report.bytesSent))
        DaemonLog.logger.info("""
            \(vm.name): resync (\(requirement.reason)) sent \(report.bytesSent) of \(report.diskBytes) bytes, \
            compared \(report.bytesCompared), in \(String(format: "%.2f", report.seconds)) s
            """)
        // The first consistent point after the resync, at once rather than at the next tick.
        var point: RecoveryPoint?
        do {
            point = try cycle(vm, store, consistency: .crash)
        } catch {
            update(vm.name) { $0.lastError = "the first point after the resync failed (the next cycle retries): \(error)" }
        }
        update(vm.name) {
            $0.resyncPercent = nil
            $0.resyncReason = nil
            if point == nil { $0.state = .resynchronizedWaitingForPoint }
        }
        // The resync is what a refused chain was waiting for: replication is back (a point
        // that failed is retried as any failed cycle is, by the next tick).
        if point != nil { health.succeeded(vm.name, now: Self.now(), cycle: true) }
        return (report, point)
    }
}
