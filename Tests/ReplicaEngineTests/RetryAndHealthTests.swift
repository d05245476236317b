import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine
#if canImport(Glibc)
import Glibc
#endif

/// The retry schedule, the sorting of errors into recoverable and not, and the health a
/// VM's history adds up to, driven by a made-up clock.
@Suite(.timeLimit(.minutes(2)))
struct RetryAndHealthTests {
    @Test func backOffFollowsTheSeedsAndScales() {
        let real = RetryPolicy()
        #expect((1...8).map { real.delay(afterFailures: $0) / 60 } == [1, 2, 4, 8, 10, 30, 30, 30])
        #expect(real.delay(afterFailures: 0) == 0)
        #expect(abs(RetryPolicy(timeScale: 0.01).delay(afterFailures: 1) - 0.6) < 1e-9)
        #expect(RetryPolicy(timeScale: 0.01).delay(afterFailures: 40) == 18)
        #expect(RetryPolicy(timeScale: -1).timeScale == 1 && RetryPolicy(timeScale: .nan).timeScale == 1)
        var policy = ReplicationPolicy()
        #expect(RetryPolicy(policy: policy, environment: [:]).timeScale == 1)
        #expect(RetryPolicy(policy: policy, environment: ["REPLICAFS_TIME_SCALE": "0.5"]).timeScale == 0.5)
        #expect(RetryPolicy(policy: policy, environment: ["REPLICAFS_TIME_SCALE": "fast"]).timeScale == 1)
        policy.retryTimeScale = 0.02
        #expect(RetryPolicy(policy: policy, environment: ["REPLICAFS_TIME_SCALE": "0.5"]).timeScale == 0.02)
    }

    @Test func policyDecodesOldFilesAndDefaultsTheRPO() throws {
        let old = #"{"copyFrequency": 300, "retention": 86400, "compress": false}"#
        let policy = try JSONDecoder().decode(ReplicationPolicy.self, from: Data(old.utf8))
        #expect(policy.rpo == nil && policy.retryTimeScale == nil && policy.effectiveRPO == 600)
        var p = ReplicationPolicy()
        p.copyFrequency = 0
        #expect(p.effectiveRPO == 60)
        p.copyFrequency = 30
        #expect(p.effectiveRPO == 60)
        p.rpo = 5
        let back = try JSONDecoder().decode(ReplicationPolicy.self, from: JSONEncoder().encode(p))
        #expect(back.effectiveRPO == 5)
    }

    @Test func errorsAreSortedByWhatWaitingCanFix() throws {
        let store = "/srv/store"
        func classify(_ errno: Int32, _ path: String) -> ReplicationFailure {
            ReplicationFailure.classify(SystemError(errno: errno, operation: "write", path: path), store: store)
        }
        for e in [ENOSPC, EDQUOT, ENOMEM, EIO, ETIMEDOUT, EAGAIN, ENOTCONN, EHOSTUNREACH, ESTALE] {
            #expect(classify(e, store + "/vm/replica/a.img").recoverable, "errno \(e) at the target")
        }
        #expect(classify(ENOSPC, store + "/vm/replica/a.img").reason == "target store full")
        #expect(classify(ENOSPC, "/disks/a.img.000003.hrl").reason == "source disk full")
        #expect(classify(ENOTCONN, store).reason == "target unreachable")
        for e in [EACCES, EPERM, EROFS] {
            #expect(!classify(e, store + "/vm/catalog.json").recoverable, "errno \(e)")
        }
        #expect(classify(EACCES, store + "/vm/catalog.json").reason == "access denied by the target")
        // EIO: the target may come back, a source log that cannot be read will not.
        #expect(!classify(EIO, "/disks/a.img.000003.hrl").recoverable)
        // ENOENT: the store's root gone is a missing mount; a source disk gone is not found.
        #expect(classify(ENOENT, store + "/vm/catalog.json").recoverable)
        #expect(classify(ENOENT, store + "/vm/catalog.json").reason == "target store not mounted")
        #expect(!classify(ENOENT, "/disks/a.img").recoverable)
        #expect(classify(ENOENT, "/disks/a.img").reason == "disk not found")
        // A path that merely starts like the store's is not in it.
        #expect(classify(ENOSPC, store + "2/x").reason == "source disk full")
        #expect(ReplicationFailure.classify(ReplicaError("quiesce command failed with status 1: x"), store: store).recoverable)
        #expect(!ReplicationFailure.classify(ReplicaError("x", kind: .nonRecoverable), store: store).recoverable)
        #expect(!ReplicationFailure.classify(ReplicaError("x", kind: .nonRecoverable), store: store).resync)
        // A chain the target refuses is not retried as is, and not Critical: a resync fixes it.
        let chain = ReplicationFailure.classify(ReplicaError("broken log chain for disk a.img: resync required", kind: .resyncRequired), store: store)
        #expect(!chain.recoverable && chain.resync && chain.reason == "resync required")
        #expect(!classify(ENOSPC, store + "/vm/replica/a.img").resync && !classify(EACCES, store).resync)
        #expect(!ReplicationFailure(recoverable: true, reason: "r", message: "m", resync: true).resync)
        #expect(ReplicaError("same", kind: .nonRecoverable) == ReplicaError("same"))
        // Errors with a code compare by it, whatever their text; without one, by text.
        #expect(ReplicaError("VM a is not failed over", code: .notFailedOver) == ReplicaError("VM b is not failed over", code: .notFailedOver))
        #expect(ReplicaError("same", code: .notFailedOver) != ReplicaError("same", code: .alreadyFailedOver))
        #expect(ReplicaError("same", code: .badRequest) != ReplicaError("same"))
        #expect(ReplicaError("one") != ReplicaError("two"))
    }

    @Test func realStoreErrorsCarryTheirKind() throws {
        var template = Array("/tmp/rfs-health-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disks = dir + "/disks", storeDir = dir + "/store"
        try FileSystem.mkdirs(disks)
        try FileSystem.mkdirs(storeDir)
        // A store that is not there (an unmounted share) is worth waiting for.
        do {
            _ = try DirectoryStore(root: dir + "/absent")
            Issue.record("a missing store opened")
        } catch {
            #expect(ReplicationFailure.classify(error, store: dir + "/absent").recoverable)
        }
        // A broken chain (a log missing between the replica and the shipped one) is not.
        try Data(repeating: 7, count: 64 << 10).write(to: URL(fileURLWithPath: disks + "/a.img"))
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        let set = try DiskSet.open(directory: disks)
        for i in 0..<2 {
            try [UInt8](repeating: UInt8(i), count: 100).withUnsafeBytes { try set.images[0].write($0, offset: Int64(i * 100)) }
            _ = try set.rotate()
        }
        try set.close()
        let logs = try FileSystem.list(disks).filter { $0.hasSuffix(".hrl") }.sorted().map { disks + "/" + $0 }
        try store.commit(vm: "vm", logs: ["a.img": [logs[0]]], consistency: .crash, cut: 1)
        // Skip the second log: the third is sealed too (the set's close sealed it) and starts past the gap.
        do {
            try store.commit(vm: "vm", logs: ["a.img": [logs[2]]], consistency: .crash, cut: 3)
            Issue.record("a broken chain committed")
        } catch {
            let failure = ReplicationFailure.classify(error, store: store.root)
            #expect(!failure.recoverable && failure.resync && failure.message.contains("resync required"), "\(failure)")
        }
        do {
            _ = try store.points("other")
            Issue.record("an unknown VM was found")
        } catch {
            #expect(!ReplicationFailure.classify(error, store: store.root).recoverable)
        }
    }

    func vm(_ name: String, copyFrequency: Double, rpo: Double? = nil) -> ProtectedVM {
        var policy = ReplicationPolicy()
        policy.copyFrequency = copyFrequency
        policy.rpo = rpo
        return ProtectedVM(name: name, disks: ["a.img"], target: "/srv/store", policy: policy)
    }

    func state(_ tracker: HealthTracker, _ name: String, lastCut: Double?, now: Double) -> VMState {
        var s = VMState(vm: name, state: .protected, pendingBytes: 0)
        tracker.annotate(&s, lastCut: lastCut, now: now)
        return s
    }

    @Test func recoverableFailuresBackOffAndSuccessResets() {
        let t = HealthTracker()
        t.observe([vm("v", copyFrequency: 60)])
        t.markReplicated("v", since: 1000)
        let full = ReplicationFailure(recoverable: true, reason: "target store full", message: "write x: No space left on device")
        var now = 1000.0
        #expect(t.mayAttempt("v", now: now))
        let expected = [60.0, 120, 240, 480, 600, 1800, 1800]
        for delay in expected {
            #expect(t.failed("v", full, now: now, environment: [:]) == delay)
            #expect(!t.mayAttempt("v", now: now + delay - 0.01))
            now += delay
            #expect(t.mayAttempt("v", now: now))
        }
        var s = state(t, "v", lastCut: nil, now: now)
        #expect(s.health == .warning && s.retryAttempt == 7 && s.lastError == full.message)
        #expect(s.healthReasons.first?.hasPrefix("target store full: write x: No space left on device; 7 failed attempts, next retry at") == true)
        t.succeeded("v", now: now, cycle: true)
        s = state(t, "v", lastCut: now, now: now + 1)
        #expect(s.retryAttempt == 0 && s.nextRetryAt == nil && !s.healthReasons.contains { $0.hasPrefix("target store full") })
        // The schedule starts again from one minute.
        #expect(t.failed("v", full, now: now, environment: [:]) == 60)
        #expect(t.failed("v", full, now: now, environment: ["REPLICAFS_TIME_SCALE": "0.01"]) != nil)
    }

    @Test func nonRecoverableFailuresHoldCriticalUntilResume() {
        let t = HealthTracker()
        t.observe([vm("v", copyFrequency: 10)])
        t.markReplicated("v", since: 0)
        let denied = ReplicationFailure(recoverable: false, reason: "access denied by the target", message: "open /srv/store/v/.lock: Permission denied")
        #expect(t.failed("v", denied, now: 100) == nil)
        for later in [100.0, 1000, 100_000] { #expect(!t.mayAttempt("v", now: later)) }
        var s = state(t, "v", lastCut: 100_000, now: 100_000)
        #expect(s.health == .critical && s.retryAttempt == 1 && s.nextRetryAt == nil)
        #expect(s.healthReasons.first?.contains("replicafs resume v") == true)
        #expect(t.isCritical("v") == denied)
        #expect(t.resume("v"))
        #expect(t.mayAttempt("v", now: 100_001) && t.isCritical("v") == nil && !t.resume("v"))
        s = state(t, "v", lastCut: 100_000, now: 100_001)
        #expect(s.health != .critical && s.retryAttempt == 0)
    }

    @Test func aRefusedChainWarnsAndWaitsForTheResyncWithoutBackOff() {
        let t = HealthTracker()
        t.observe([vm("v", copyFrequency: 60)])
        t.markReplicated("v", since: 1000)
        let chain = ReplicationFailure(recoverable: false, reason: "resync required",
                                       message: "broken log chain for disk a.img: resync required", resync: true)
        // Neither a retry on the back-off nor Critical: the resync may run at once.
        #expect(t.failed("v", chain, now: 1000, environment: [:]) == nil)
        #expect(t.mayAttempt("v", now: 1000) && t.isCritical("v") == nil)
        var s = state(t, "v", lastCut: 1000, now: 1001)
        #expect(s.health == .warning && s.retryAttempt == 1 && s.nextRetryAt == nil && s.lastError == chain.message)
        #expect(s.healthReasons.first == "resync required: broken log chain for disk a.img: resync required", "\(s.healthReasons)")
        // The failed cycle is a missed one (1 of 1 in the last hour).
        #expect(s.cyclesMissedLastHour == 1)
        // Once the replicator has the requirement, the state says why and what it waits for.
        s = VMState(vm: "v", state: .resyncRequired, pendingBytes: 0)
        s.resyncReason = "the target refused the logs (waiting for the resync window 18:30-06:00)"
        t.annotate(&s, lastCut: 1000, now: 1001)
        #expect(s.health == .warning && s.healthReasons.first == "resync required: the target refused the logs (waiting for the resync window 18:30-06:00)", "\(s.healthReasons)")
        #expect(s.healthReasons.filter { $0.hasPrefix("resync required") }.count == 1, "said once: \(s.healthReasons)")
        s = VMState(vm: "v", state: .resynchronizing, pendingBytes: 0)
        s.resyncReason = "the target refused the logs"
        s.resyncPercent = 42.5
        t.annotate(&s, lastCut: 1000, now: 1001)
        #expect(s.health == .warning && s.healthReasons.first == "resynchronizing 42%: the target refused the logs", "\(s.healthReasons)")
        // The resync and its first point end it (the missed cycle still counts for an hour).
        t.succeeded("v", now: 1002, cycle: true)
        s = state(t, "v", lastCut: 1002, now: 1003)
        #expect(s.retryAttempt == 0 && s.lastError == nil && !s.healthReasons.contains { $0.contains("resync") }, "\(s)")
        // A VM waiting for its window after a mount-time trigger, with no failed attempt, is in Warning too.
        let fresh = HealthTracker()
        var w = VMState(vm: "w", state: .resyncRequired, pendingBytes: 0)
        w.resyncReason = "image a.img changed outside the mount (waiting for the resync window 18:30-06:00)"
        fresh.annotate(&w, lastCut: nil, now: 0)
        #expect(w.health == .warning && w.retryAttempt == 0 && w.nextRetryAt == nil && w.health.exitCode == 1)
    }

    @Test func lagPastTheRPOAndMissedCyclesWarn() {
        let t = HealthTracker()
        t.observe([vm("v", copyFrequency: 30, rpo: 90)])
        t.markReplicated("v", since: 0)
        // 100 cycles on time: normal.
        var now = 0.0
        for _ in 0..<100 { now += 30; t.succeeded("v", now: now, cycle: true) }
        var s = state(t, "v", lastCut: now, now: now + 5)
        #expect(s.health == .normal && s.healthReasons.isEmpty && s.cyclesDueLastHour == 100 && s.cyclesMissedLastHour == 0)
        // The lag passes the RPO with no cycle.
        s = state(t, "v", lastCut: now, now: now + 91)
        #expect(s.health == .warning && s.healthReasons == ["lag 91 s exceeds the RPO of 90 s"])
        // 20 of the next 100 cycles fail (recoverable, retried in time): 20% of the last hour's cycles is not yet a warning...
        let blip = ReplicationFailure(recoverable: true, reason: "target unreachable", message: "x")
        for i in 0..<100 {
            now += 30
            if i % 5 == 0 { t.failed("v", blip, now: now, environment: ["REPLICAFS_TIME_SCALE": "0.001"]) } else { t.succeeded("v", now: now, cycle: true) }
        }
        s = state(t, "v", lastCut: now, now: now)
        #expect(s.cyclesDueLastHour >= 100 && s.cyclesDueLastHour <= 122 && s.cyclesMissedLastHour == 20, "\(s)")
        #expect(s.health == .normal, "\(s.healthReasons)")
        // ...while a VM failing for 10 minutes, held back by the back-off in between, misses
        // every cycle that comes due meanwhile.
        var attempts = 0
        for k in 1...40 {
            let at = now + Double(k) * 15
            if t.mayAttempt("v", now: at) { attempts += 1; t.failed("v", blip, now: at, environment: [:]) }
        }
        #expect(attempts == 4, "retries at 1, 2 and 4 minutes after the first failure within 10 minutes")
        s = state(t, "v", lastCut: now, now: now + 600)
        // One missed cycle per 30 s from the first failure, not one per retry.
        #expect(s.cyclesMissedLastHour >= 30 && s.retryAttempt == 4, "\(s)")
        let fresh = HealthTracker()
        fresh.observe([vm("f", copyFrequency: 30)])
        fresh.markReplicated("f", since: 0)
        for second in 0...600 where fresh.mayAttempt("f", now: Double(second)) {
            fresh.failed("f", blip, now: Double(second), environment: [:])
        }
        let f = state(fresh, "f", lastCut: 0, now: 600)
        #expect(f.cyclesMissedLastHour == 21 && f.cyclesDueLastHour == 21 && f.retryAttempt == 4, "\(f)")
        #expect(s.health == .warning && s.healthReasons.contains { $0.contains("replication cycles missed in the last hour") }, "\(s.healthReasons)")
        // An hour later the old misses no longer count.
        t.succeeded("v", now: now + 700, cycle: true)
        s = state(t, "v", lastCut: now + 4400, now: now + 4400)
        #expect(s.cyclesDueLastHour == 0 && s.health == .normal, "\(s)")
    }

    @Test func healthOrdersAndGivesExitCodes() {
        #expect([Health.warning, .critical, .normal].max() == .critical)
        #expect(Health.allCases.map(\.exitCode) == [0, 1, 2])
    }
}
