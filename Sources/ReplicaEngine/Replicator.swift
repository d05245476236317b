import Foundation
import ReplicaLog
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Replicates the protected VMs of a disk set to their target stores, inside the mount
/// daemon: initial replication (a copy taken while writes go on, made consistent by the
/// logs written meanwhile), then at each copy-frequency tick a cut across all disks, the
/// sealed logs committed at the target as a crash-consistent point, and deleted at the
/// source only once the target has made them durable. Snapshots cut a point on demand,
/// app-consistent ones between the policy's quiesce and thaw commands.
// @unchecked: holds the DiskSet the FUSE threads write through; its own state is under `stateLock`.
public final class Replicator: @unchecked Sendable {
    public typealias VMState = ReplicaEngine.VMState

    public let disks: DiskSet
    /// Where the disks are mounted, for the commands `status` suggests; set before `start`.
    public var mountpoint: String?
    /// Pushes the kernel's cached writes of these images through the mount (fsync via the mount).
    let flushImages: ([String]) throws -> Void
    let cycleLock = Lock()
    /// Resync triggers, requirements and window (ResyncScheduler.swift).
    public let resync: ResyncScheduler
    private let stateLock = Lock()
    private var states: [String: VMState] = [:]
    private var lastCycle: [String: Double] = [:]
    private var lastAppPoint: [String: Double] = [:]
    private var lastCut: [String: UInt64] = [:]
    private var running = true
    /// Retry schedule, Critical state and missed cycles per VM.
    public let health = HealthTracker()
    /// The bandwidth limit and the time each VM waited on it (BandwidthMeter.swift).
    public let bandwidth = BandwidthMeter()
    /// When each VM's remote store last said "not failed over, replica present".
    let remoteChecks = RemoteCheckTimes()
    /// Sends the active logs of VMs replicating to a receiver ahead of their cut.
    let streamer: LogStreamer

    /// Deletes shipped logs in the background.
    let reaper: ShippedLogReaper
    /// The VMs' event history, beside their policies (EventLog.swift).
    public let events: EventLog
    /// The health each VM's last event said, and when health was last checked (once a second).
    private var reportedHealth: [String: Health] = [:]
    private var healthCheckedAt: Double = 0
    /// Points committed and not yet told, per VM whose cycles are shorter than `commitEventInterval`.
    private var untoldCommits: [String: (since: Double, points: Int, bytes: Int64)] = [:]
    /// Below this copy frequency (continuous, seconds), commits make one event a minute, not
    /// one a point: the history's size bound would otherwise hold only minutes of commits.
    static let commitEventInterval: Double = 60

    public init(disks: DiskSet, flushImages: @escaping ([String]) throws -> Void) {
        self.disks = disks
        self.flushImages = flushImages
        self.resync = ResyncScheduler(disks: disks)
        self.reaper = ShippedLogReaper(disksDir: disks.directory)
        self.events = EventLog(disksDir: disks.directory)
        self.streamer = LogStreamer(disks: disks)
        streamer.sent = { [unowned self] vm, bytes in self.update(vm) { $0.bytesSent += bytes } }
    }

    public func start() {
        let t = Thread { [self] in
            while stateLock.withLock({ running }) {
                // A continuous VM that just made a point has more logged already: its next
                // cut starts now, not after the tick's 100 ms (a tenth of a second of lag);
                // the millisecond lets a snapshot waiting for the cycle lock take it.
                usleep(tick() ? 1_000 : 100_000)
            }
        }
        t.name = "replicafs-replicator"
        t.start()
        let streaming = Thread { [self] in streamer.run { stateLock.withLock { running } } }
        streaming.name = "replicafs-log-streamer"
        streaming.start()
    }

    public func stop() { stateLock.withLock { running = false } }

    /// Stops and waits for a cycle in progress to end, before the logs are sealed at shutdown.
    public func stopAndWait() {
        stop()
        cycleLock.withLock {}
        streamer.aroundCut {}
        reaper.drain()
        do {
            try resync.recordFingerprints(disks)
        } catch {
            // Without a fingerprint the next mount cannot tell an image changed while unmounted.
            DaemonLog.logger.error("cannot record the images' fingerprints at shutdown: \(error)")
        }
    }

    public var vmStates: [VMState] {
        let now = Self.now()
        let (current, cuts) = stateLock.withLock { (states.values.sorted { $0.vm < $1.vm }, lastCut) }
        return current.map { state in
            var s = state
            // A requirement recorded since the last pass (a cut refused for a broken chain)
            // shows at once, not at the next tick.
            if s.state == .protected, resync.requirement(s.vm) != nil { s.state = .resyncRequired }
            bandwidth.annotate(&s, now: now)
            health.annotate(&s, lastCut: cuts[s.vm].map { Double($0) / 1e9 }, now: now)
            if s.state == .failedOver { Self.annotateFailedOver(&s) }
            return s
        }
    }

    public static func now() -> Double { Double(Clock.nowNanos()) / 1e9 }

    /// One pass: pick up protection changes, run what is due. True when a continuously
    /// replicated VM made a point.
    @discardableResult
    func tick() -> Bool {
        var continuousPoint = false
        let vms = ProtectedVM.all(disksDir: disks.directory)
        stateLock.withLock { states = states.filter { s in vms.contains { $0.name == s.key } } }
        streamer.keep(only: Set(vms.map(\.name)))
        health.observe(vms)
        for vm in vms {
            // After a failure nothing runs before the retry is due; while Critical, nothing until `resume`.
            guard health.mayAttempt(vm.name, now: Self.now()) else { continue }
            // A remote store that answered these two within the last second is not asked
            // again at each 100 ms tick (RemoteCheckTimes.swift).
            let checked = remoteChecks.fresh(vm, now: Self.now())
            do {
                let store = try bandwidth.openStore(vm)
                streamer.refresh(vm, store: store)
                // Failed over (not a drill): the VM runs from the store's side, which takes no
                // replication until failback; say so and what to run instead of retrying.
                if !checked, noteFailover(vm, store) { streamer.publish(vm, store: nil); continue }
                if !checked, !store.hasVM(vm.name) {
                    streamer.publish(vm, store: nil)
                    try requireNoLostReplica(vm, store)
                    if let at = vm.policy.initialAt, Self.now() < at, store.initialCopy(vm.name) == nil {
                        update(vm.name) {
                            $0.state = .initialReplicationScheduled
                            $0.initialScheduledAt = ISOTime.format(Date(timeIntervalSince1970: at))
                        }
                        continue
                    }
                    let started = Self.now()
                    try cycleLock.withLock { try initialReplication(vm, store) }
                    health.markReplicated(vm.name, since: started)
                    health.succeeded(vm.name, now: Self.now(), cycle: false)
                    continue
                }
                if !checked { remoteChecks.answered(vm, now: Self.now()) }
                if try resyncIfNeeded(vm, store) { streamer.publish(vm, store: nil); continue }
                let now = Self.now()
                if !health.wasReplicated(vm.name) {
                    health.markReplicated(vm.name, since: (try? store.points(vm.name).last).map { Double($0.timeNanos) / 1e9 } ?? now)
                }
                // Continuous: a cut at most every 0.1 s, counted from the last cut's start, so a
                // cycle that took longer is followed by the next at once (counted from its end,
                // a write waited up to 0.1 s more); otherwise the copy frequency from its end.
                let (lastApp, last, lastCutAt) = stateLock.withLock { () -> (Double?, Double, Double) in
                    if lastAppPoint[vm.name] == nil { lastAppPoint[vm.name] = now }
                    return (lastAppPoint[vm.name], lastCycle[vm.name] ?? 0, Double(lastCut[vm.name] ?? 0) / 1e9)
                }
                let due = vm.policy.copyFrequency == 0 ? now - lastCutAt >= 0.1 : now - last >= vm.policy.copyFrequency
                if let every = vm.policy.appConsistentEvery, let lastApp, now - lastApp >= every {
                    _ = try cut(vm.name, appConsistent: true)
                    health.succeeded(vm.name, now: Self.now(), cycle: true)
                    streamer.publish(vm, store: store)
                } else if due || health.retryPending(vm.name) {
                    // A retry runs when the back-off says, not at the next copy-frequency tick.
                    // Continuous mode skips cuts with nothing logged (no empty points 10 times a
                    // second), unless a failed attempt left sealed logs to ship.
                    let idleSkips = vm.policy.copyFrequency == 0 && !health.retryPending(vm.name)
                    let retry = health.retryPending(vm.name)
                    let point = try cycleLock.withLock { () -> RecoveryPoint? in
                        // A snapshot that cut while this waited for the lock made the point
                        // that was due: another one now would only repeat it.
                        guard retry || stateLock.withLock({ lastCycle[vm.name] ?? 0 }) == last else { return nil }
                        return try cycle(vm, store, consistency: .crash, skipIfIdle: idleSkips)
                    }
                    if point != nil && vm.policy.copyFrequency == 0 { continuousPoint = true }
                    health.succeeded(vm.name, now: Self.now(), cycle: true)
                    // In step with its store: from now on its active logs go ahead of the cuts.
                    streamer.publish(vm, store: store)
                }
            } catch {
                streamer.publish(vm, store: nil)
                // The questions skipped this tick first: a VM failed over or a replica gone
                // since they were last asked is told as such, not as the refused commit.
                if checked, let store = try? bandwidth.openStore(vm) {
                    if noteFailover(vm, store) { continue }
                    if !store.hasVM(vm.name) {
                        do { try requireNoLostReplica(vm, store) } catch { recordFailure(vm, error); continue }
                    }
                }
                recordFailure(vm, error)
            }
        }
        recordHealthChanges()
        return continuousPoint
    }

    /// A commit event per point, or for frequent cycles one a minute summing the points since.
    private func recordCommit(_ vm: ProtectedVM, _ point: RecoveryPoint, shippedBytes: Int64) {
        let now = Self.now()
        let what = "\(point.consistency.rawValue)-consistent point \(point.id) committed"
        if vm.policy.copyFrequency >= 10 || point.consistency == .app {
            return events.record(.init(vm: vm.name, kind: .commit, message: "\(what) (\(shippedBytes) log bytes shipped)",
                                       point: point.id, bytes: shippedBytes))
        }
        let told = stateLock.withLock { () -> (points: Int, bytes: Int64, seconds: Double)? in
            let pending = untoldCommits[vm.name]
            var t = pending ?? (now, 0, 0)
            t.points += 1
            t.bytes += shippedBytes
            // The first point is told at once; then one event a minute with those since.
            if pending != nil && now - t.since < Self.commitEventInterval {
                untoldCommits[vm.name] = t
                return nil
            }
            untoldCommits[vm.name] = (now, 0, 0)
            return (t.points, t.bytes, now - t.since)
        }
        guard let told else { return }
        let summary = told.points == 1 ? "\(what) (\(told.bytes) log bytes shipped)"
            : "\(what), \(told.points) points in \(Int(told.seconds)) s (\(told.bytes) log bytes shipped)"
        events.record(.init(vm: vm.name, kind: .commit, message: summary, point: point.id, bytes: told.bytes))
    }

    /// Once a second: an event for each VM whose health differs from what its last health
    /// event said (a VM first seen Normal makes none).
    private func recordHealthChanges() {
        let now = Self.now()
        guard stateLock.withLock({ now - healthCheckedAt >= 1 }) else { return }
        let current = vmStates
        let changed = stateLock.withLock { () -> [VMState] in
            healthCheckedAt = now
            var changed: [VMState] = []
            for s in current where (reportedHealth[s.vm] ?? .normal) != s.health {
                changed.append(s)
                reportedHealth[s.vm] = s.health
            }
            return changed
        }
        for s in changed {
            let why = s.healthReasons.isEmpty ? "" : ": " + s.healthReasons.joined(separator: "; ")
            events.record(.init(vm: s.vm, kind: .health, level: s.health, message: "health \(s.health.rawValue)\(why)"))
        }
    }

    /// Classifies a failed attempt, schedules the retry (or holds the VM in Critical, or
    /// requires a resync) and says so in the daemon's log.
    private func recordFailure(_ vm: ProtectedVM, _ error: Error, cycle: Bool = true) {
        remoteChecks.forget(vm.name)
        let failure = ReplicationFailure.classify(error, store: (try? FileSystem.realPath(vm.target)) ?? vm.target)
        // A chain the target refused: the resync is the retry (a first reason stays).
        if failure.resync { resync.require(vm.name, reason: "the target refused the logs: \(failure.message)") }
        let delay = health.failed(vm.name, failure, now: Self.now(), cycle: cycle)
        update(vm.name) { $0.lastError = failure.message }
        let window = vm.policy.resyncWindow ?? ResyncScheduler.defaultWindow
        let next = delay.map { String(format: "retry in %.1f s", $0) }
            ?? (failure.resync ? "a resync follows (window \(window), or now with `replicafs resync \(vm.name) --now`)"
                               : "not retried until `replicafs resume \(vm.name)`")
        DaemonLog.logger.warning("\(vm.name): replication failed (\(failure.reason)): \(failure.message); \(next)")
        let kind: EventLog.Kind = delay != nil ? .retry : failure.resync ? .resync : .error
        events.record(.init(vm: vm.name, kind: kind, level: delay != nil || failure.resync ? .warning : .critical,
                            message: "replication failed (\(failure.reason)): \(failure.message); \(next)"))
    }

    /// A replica this daemon saw at the target and that is now gone is not seeded again on its
    /// own: the store may be unmounted, or the replica deleted by hand. `resume` allows it.
    private func requireNoLostReplica(_ vm: ProtectedVM, _ store: any TargetStore) throws {
        guard health.wasReplicated(vm.name) else { return }
        // `hasVM` cannot tell "gone" from "did not answer": a store that is down for now (an
        // object store's endpoint restarting) fails with its own recoverable error, retried on
        // the back-off, and one that finds the replica again is asked again at the next attempt.
        do {
            _ = try store.catalog(vm.name)
            throw ReplicaError("target store \(store.location) did not answer whether it holds VM \(vm.name)", kind: .recoverable)
        } catch let error as ReplicaError where error.kind == .recoverable {
            throw error
        } catch {}
        throw ReplicaError("VM \(vm.name) not found in target store \(store.location): its replica is gone (store unmounted or replica deleted?)", kind: .nonRecoverable)
    }

    /// Clears Critical and the back-off of a VM: the next attempt runs at once. Returns whether it was Critical.
    public func resume(_ name: String) throws -> Bool {
        guard ProtectedVM.all(disksDir: disks.directory).contains(where: { $0.name == name }) else {
            throw ReplicaError("VM \(name) is not protected on \(disks.directory)")
        }
        let was = health.resume(name)
        events.record(.init(vm: name, kind: .resume, message: was ? "resumed by the administrator after Critical" : "resumed by the administrator: retrying now"))
        return was
    }

    /// Cuts a recovery point now and returns it once committed at the target. Runs even while
    /// a retry is scheduled (and counts as an attempt), but not while the VM is Critical.
    public func snapshot(_ name: String, appConsistent: Bool) throws -> RecoveryPoint {
        guard let vm = ProtectedVM.all(disksDir: disks.directory).first(where: { $0.name == name }) else {
            throw ReplicaError("VM \(name) is not protected on \(disks.directory)")
        }
        if let critical = health.isCritical(name) {
            throw ReplicaError("VM \(name) is Critical (\(critical.message)): fix it, then run replicafs resume \(name)")
        }
        do {
            let point = try cut(name, appConsistent: appConsistent)
            health.succeeded(name, now: Self.now(), cycle: false)
            return point
        } catch let e as ReplicaError where e.kind == .waitingForResync {
            // Refused while the VM waits for its resync window: no attempt was made, so no
            // failure, no back-off (which could hold the resync past the window's opening).
            throw e
        } catch {
            recordFailure(vm, error, cycle: false)
            throw error
        }
    }

    private func cut(_ name: String, appConsistent: Bool) throws -> RecoveryPoint {
        guard let vm = ProtectedVM.all(disksDir: disks.directory).first(where: { $0.name == name }) else {
            throw ReplicaError("VM \(name) is not protected on \(disks.directory)")
        }
        return try cycleLock.withLock {
            let store = try bandwidth.openStore(vm)
            if !store.hasVM(vm.name) {
                try requireNoLostReplica(vm, store)
                try initialReplication(vm, store)
            }
            try resyncBeforeSnapshotLocked(vm, store)
            guard appConsistent else { return try cycle(vm, store, consistency: .crash)! }
            if let quiesce = vm.policy.quiesce { try Self.runHook(quiesce, what: "quiesce") }
            var thawError: Error?
            let point: RecoveryPoint
            do {
                point = try cycle(vm, store, consistency: .app)!
            } catch {
                if let thaw = vm.policy.thaw { do { try Self.runHook(thaw, what: "thaw") } catch { thawError = error } }
                throw error
            }
            if let thaw = vm.policy.thaw { try Self.runHook(thaw, what: "thaw") }
            if let thawError { throw thawError }
            stateLock.withLock { lastAppPoint[vm.name] = Self.now() }
            return point
        }
    }

    /// Copy the disks while writes go on; the logs cut just before the copy started make it
    /// consistent. An initial copy a crash interrupted resumes where it stopped: the logs since
    /// its cut are still at the source (the restarted daemon continues the same chains).
    private func initialReplication(_ vm: ProtectedVM, _ store: any TargetStore) throws {
        // Another caller (a snapshot, or the schedule) may have done it while this one waited.
        guard !store.hasVM(vm.name) else { return }
        let journals = try vm.disks.map { disk -> ImageJournal in
            guard let j = disks.journal(named: disk) else { throw ReplicaError("disk \(disk) of VM \(vm.name) is not in \(disks.directory)", kind: .nonRecoverable) }
            return j
        }
        var chains: [String: (chain: String, nextLSN: UInt64)] = [:]
        let resumed = store.initialCopy(vm.name)
        if let resumed {
            for d in resumed.disks { chains[d.name] = (d.chain, d.nextLSN) }
        } else {
            try flushImages(vm.disks)
            _ = try disks.rotate(only: Set(vm.disks))
            for j in journals {
                // The copy starts the chain afresh: an earlier break is in it.
                j.restartChain()
                let active = j.activeLog
                chains[j.name] = (active.chain, active.firstLSN)
                // Writes logged before the cut must be in the image before the copy reads it.
                j.waitForWrites(before: active.firstLSN)
            }
        }
        let total = max(1, journals.reduce(Int64(0)) { $0 + ((try? $1.image.size()) ?? 0) })
        let already = resumed?.disks.reduce(Int64(0)) { $0 + ($1.done ? ((try? FileSystem.stat(disks.directory + "/" + $1.name).st_size).map(Int64.init) ?? 0) : $1.copiedTo) } ?? 0
        var copied: Int64 = 0
        let started = Self.now()
        let rateLimit = ProcessInfo.processInfo.environment["REPLICAFS_INITIAL_COPY_RATE"].flatMap(Double.init)
        update(vm.name) { $0.state = .initialReplication; $0.initialPercent = Double(already) * 100 / Double(total) }
        var sources: [String: String] = [:]
        for j in journals { sources[j.name] = j.image.path }
        try store.seed(vm: vm.name, sources: SourceFile.map(sources), chains: chains) { n in
            copied += n
            let elapsed = max(Self.now() - started, 0.001)
            let rate = Double(copied) / elapsed
            self.update(vm.name) {
                $0.initialPercent = min(100, Double(already + copied) * 100 / Double(total))
                $0.initialMBps = rate / 1e6
                $0.initialETASeconds = rate > 0 ? Double(max(0, total - already - copied)) / rate : nil
            }
            if let rateLimit, rateLimit > 0 {
                // Bandwidth limit for the copy (and a way for tests to interrupt it midway).
                let ahead = Double(copied) / rateLimit - (Self.now() - started)
                if ahead > 0 { usleep(UInt32(min(ahead, 1) * 1e6)) }
            }
        }
        // The store keeps the VM's disks and networks for failover without the primary.
        do { try store.saveMetadata(VMMetadata(vm)) } catch {
            DaemonLog.logger.error("\(vm.name): cannot save vm.json at the target: \(error)")
        }
        // Logs wholly before each chain's start are in the copy: they need not travel.
        for j in journals {
            for path in try j.sealedLogs() where try LogScanner.scan(path).nextLSN <= chains[j.name]!.nextLSN {
                try reaper.retire(path)
            }
        }
        let seconds = max(Self.now() - started, 0.001)
        update(vm.name) {
            $0.state = .protected
            $0.initialPercent = 100
            $0.initialETASeconds = 0
            $0.initialScheduledAt = nil
            $0.lastError = nil
        }
        let how = resumed != nil ? "resumed at \(already) bytes and copied" : "copied"
        DaemonLog.logger.info("\(vm.name): initial replication \(how) \(copied) bytes in \(String(format: "%.1f", seconds)) s")
        events.record(.init(vm: vm.name, kind: .initialCopy, message: "initial replication \(how) \(copied) bytes to \(store.location) in \(String(format: "%.1f", seconds)) s", bytes: copied))
    }

    /// One delta cycle: flush, cut, commit the sealed logs at the target, delete them here, prune.
    @discardableResult
    func cycle(_ vm: ProtectedVM, _ store: any TargetStore, consistency: RecoveryPoint.Consistency,
                       skipIfIdle: Bool = false) throws -> RecoveryPoint? {
        let cutTime = Clock.nowNanos()
        try flushImages(vm.disks)
        if skipIfIdle, vm.disks.allSatisfy({ (disks.journal(named: $0)?.state.records ?? 0) == 0 }) {
            // Nothing logged before this moment: the next write shipped is younger than it.
            stateLock.withLock {
                lastCycle[vm.name] = Self.now()
                lastCut[vm.name] = cutTime
            }
            return nil
        }
        if consistency == .app {
            for disk in vm.disks {
                try disks.journal(named: disk)?.mark(Marker(kind: .appConsistent, cutID: 0, timeNanos: cutTime, label: vm.name))
            }
        }
        let rotation = try streamer.aroundCut { try disks.rotate(only: Set(vm.disks)) }
        // The cut checked each log and image: with a log lost or an image changed from
        // outside, these logs miss changes, and a point made from them would be wrong.
        if let broken = vm.disks.lazy.compactMap({ self.disks.journal(named: $0)?.chainBreak }).first {
            resync.require(vm.name, reason: broken)
            throw ReplicaError("VM \(vm.name): no point made: \(broken); a resync makes the next point", kind: .resyncRequired)
        }
        var logs: [String: [String]] = [:]
        for disk in vm.disks {
            guard let j = disks.journal(named: disk) else { throw ReplicaError("disk \(disk) of VM \(vm.name) is not in \(disks.directory)", kind: .nonRecoverable) }
            logs[disk] = try j.sealedLogs()
        }
        let shippedBytes = try logs.values.joined().reduce(Int64(0)) { $0 + Int64(try FileSystem.stat($1).st_size) }
        // Sealed: the streamer sends these no more, and the upload below resumes them.
        streamer.forget(logs.values.joined())
        let commitStart = Self.now()
        // A transfer or commit that fails leaves nothing staged to take space from the retry.
        // After a commit the receiver holds only what the streamer sent of the next logs.
        var committed = false
        defer { if !committed { store.discardReceived(vm: vm.name) } }
        var (received, sent) = try store.receive(vm: vm.name, logs: SourceFile.map(logs), compress: vm.policy.compress)
        let point: RecoveryPoint
        do {
            do {
                point = try store.commit(vm: vm.name, logs: received, consistency: consistency, cut: rotation.cutID, timeNanos: cutTime)
            } catch let error as ReplicaError where error.code == .notUploaded {
                // The receiver restarted in the middle of the commit and dropped what it had
                // staged: send the logs again (from its durable offsets) and commit once more.
                DaemonLog.logger.warning("\(vm.name): \(error.description): sending the logs again")
                let again = try store.receive(vm: vm.name, logs: SourceFile.map(logs), compress: vm.policy.compress)
                received = again.logs
                sent += again.bytesSent
                point = try store.commit(vm: vm.name, logs: received, consistency: consistency, cut: rotation.cutID, timeNanos: cutTime)
            }
        } catch {
            resync.noteCommitError(vm.name, error)
            throw error
        }
        committed = true
        let committedAt = Self.now()
        for path in logs.values.joined() { try reaper.retire(path) }
        try store.prune(vm: vm.name, retentionSeconds: vm.policy.retention, nowNanos: Clock.nowNanos())
        let previousCut = stateLock.withLock { () -> UInt64? in
            lastCycle[vm.name] = committedAt
            defer { lastCut[vm.name] = cutTime }
            return lastCut[vm.name]
        }
        let pending = vm.disks.compactMap { disks.journal(named: $0)?.state.logBytes }.reduce(0, +)
        update(vm.name) {
            $0.state = .protected
            $0.lastPoint = point.id
            $0.lastPointTime = ISOTime.format(nanos: cutTime)
            $0.lagSeconds = Self.now() - Double(cutTime) / 1e9
            $0.pendingBytes = pending
            $0.lastError = nil
            if let previousCut {
                $0.recentLags.append(committedAt - Double(previousCut) / 1e9)
                if $0.recentLags.count > 2000 { $0.recentLags.removeFirst($0.recentLags.count - 2000) }
            }
            $0.appliedBytes += shippedBytes
            $0.applySeconds += committedAt - commitStart
            $0.logBytesShipped += shippedBytes
            $0.bytesSent += sent
        }
        recordCommit(vm, point, shippedBytes: shippedBytes)
        return point
    }

    func update(_ vm: String, _ change: (inout VMState) -> Void) {
        stateLock.withLock {
            var s = states[vm] ?? VMState(vm: vm, state: .initialReplication, pendingBytes: 0)
            change(&s)
            states[vm] = s
        }
    }

    /// Runs a quiesce or thaw command with a 60 s timeout; a failure or timeout is an error.
    /// Its output goes to the daemon log.
    static func runHook(_ command: String, what: String) throws {
        let result: CapturedCommand
        do {
            result = try CapturedCommand.shell(command, timeout: 60)
        } catch {
            throw ReplicaError("\(what) command failed: \(error)")
        }
        for line in (result.stdout + result.stderr).split(separator: "\n") where !line.isEmpty {
            DaemonLog.logger.info("\(what) command: \(line)")
        }
        guard result.ok else { throw ReplicaError("\(what) command failed with status \(result.status): \(command)") }
    }
}
