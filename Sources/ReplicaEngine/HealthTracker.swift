import Foundation
import Synchronization
import ReplicaStore
import ReplicaSystem

/// Per protected VM, what `status` reports as health and what gates the next attempt: the
/// retry schedule after recoverable failures (RetryPolicy), the Critical state after a
/// non-recoverable one (held until `resume`), and which replication cycles were due in the
/// last hour and whether they committed. Every method takes the time, so tests drive it
/// with a made-up clock. Thread-safe.
public final class HealthTracker: Sendable {
    /// The fraction of missed cycles in the last hour above which a VM is in Warning (Hyper-V Replica's 20%).
    public static let missedCycleLimit = 0.2
    /// The window missed cycles are counted over, in one-minute buckets.
    public static let missedCycleWindow: Double = 3600

    struct Record {
        var policy = ReplicationPolicy()
        /// Consecutive failed attempts; 0 after a success.
        var failures = 0
        var lastFailure: ReplicationFailure?
        public var nextRetryAt: Double?
        /// Set by a non-recoverable failure, cleared only by `resume`.
        public var critical: ReplicationFailure?
        /// The target held this VM's replica while this daemon watched (so a missing one is an error, not a new VM).
        var replicated = false
        /// The cut the replica is known to hold when no delta cycle ran yet (for the lag).
        var replicatedSince: Double?
        /// While failing: when a missed cycle was last counted.
        var lastMissed: Double?
        /// Per minute (time / 60): cycles due, and of those, missed.
        var cycles: [Int: (due: Int, missed: Int)] = [:]
    }

    private let table = Mutex<[String: Record]>([:])

    public init() {}

    /// Notes each VM's current policy (called every pass), and drops VMs no longer protected.
    public func observe(_ vms: [ProtectedVM]) {
        table.withLock { records in
            let names = Set(vms.map(\.name))
            records = records.filter { names.contains($0.key) }
            for vm in vms { records[vm.name, default: Record()].policy = vm.policy }
        }
    }

    /// Whether an attempt may run now: not before the next retry, never while Critical.
    /// From a failure to the next success, every copy-frequency interval that passes counts as
    /// one missed cycle, however many retries ran in it.
    public func mayAttempt(_ vm: String, now: Double) -> Bool {
        table.withLock { records in
            guard var r = records[vm] else { return true }
            if r.failures > 0, r.replicated, now - (r.lastMissed ?? now) >= max(r.policy.copyFrequency, 0.1) {
                Self.count(&r, now: now, missed: true)
                r.lastMissed = now
                records[vm] = r
            }
            return r.critical == nil && (r.nextRetryAt.map { now >= $0 } ?? true)
        }
    }

    public func isCritical(_ vm: String) -> ReplicationFailure? { table.withLock { records in records[vm]?.critical } }

    /// Whether a failed attempt is waiting to be retried (its logs are still to be shipped).
    public func retryPending(_ vm: String) -> Bool { table.withLock { records in (records[vm]?.failures ?? 0) > 0 } }

    public func wasReplicated(_ vm: String) -> Bool { table.withLock { records in records[vm]?.replicated ?? false } }

    /// The target holds the VM's replica, as of the cut at `since` (seconds since the epoch).
    public func markReplicated(_ vm: String, since: Double) {
        table.withLock { records in
            guard records[vm]?.replicated != true else { return }
            records[vm, default: Record()].replicated = true
            records[vm]!.replicatedSince = since
        }
    }

    /// An attempt succeeded; a due cycle (`cycle`) counts as committed. Resets the back-off.
    public func succeeded(_ vm: String, now: Double, cycle: Bool) {
        table.withLock { records in
            guard var r = records[vm] else { return }
            if cycle { Self.count(&r, now: now, missed: false) }
            r.failures = 0
            r.nextRetryAt = nil
            r.lastFailure = nil
            r.lastMissed = nil
            records[vm] = r
        }
    }

    /// An attempt failed: schedules the next one per the RetryPolicy, or, for a
    /// non-recoverable failure, holds the VM in Critical. A failure a resync fixes (a chain
    /// the target refused) is neither: no back-off and no Critical, the VM waits for its
    /// resync (which the caller triggers) and the resync's success resets it. Returns the
    /// delay before the retry (nil when not retried). A due cycle (`cycle`) that fails first
    /// is a missed one.
    @discardableResult
    public func failed(_ vm: String, _ failure: ReplicationFailure, now: Double, cycle: Bool = true,
                       environment: [String: String] = ProcessInfo.processInfo.environment) -> Double? {
        table.withLock { records in
            var r = records[vm] ?? Record()
            if r.failures == 0 {
                if cycle && r.replicated { Self.count(&r, now: now, missed: true) }
                r.lastMissed = now
            }
            r.failures += 1
            r.lastFailure = failure
            var delay: Double?
            if failure.recoverable {
                delay = RetryPolicy(policy: r.policy, environment: environment).delay(afterFailures: r.failures)
                r.nextRetryAt = now + delay!
            } else if failure.resync {
                r.nextRetryAt = nil
            } else {
                r.critical = failure
                r.nextRetryAt = nil
            }
            records[vm] = r
            return delay
        }
    }

    /// The administrator acted: leave Critical, forget the back-off and try at once. A replica
    /// that went missing may be seeded again. Returns whether the VM was Critical.
    @discardableResult
    public func resume(_ vm: String) -> Bool {
        table.withLock { records in
            guard var r = records[vm] else { return false }
            let was = r.critical != nil
            r.critical = nil
            r.failures = 0
            r.nextRetryAt = nil
            r.lastMissed = nil
            if was { r.replicated = false; r.replicatedSince = nil }
            records[vm] = r
            return was
        }
    }

    /// Fills the state's health, reasons, retry schedule and last error. `lastCut` is the
    /// latest cut the target holds (seconds since the epoch), when a delta cycle made one.
    /// A VM that needs a resync (the state's `resyncReason`: waiting for the window, or
    /// running) is in Warning: it makes no points until the resync ends.
    public func annotate(_ state: inout VMState, lastCut: Double?, now: Double) {
        table.withLock { records in
            let r = records[state.vm] ?? Record()
            var health = Health.normal
            var reasons: [String] = []
            state.retryAttempt = r.failures
            state.nextRetryAt = nil
            state.nextRetryInSeconds = nil
            if let critical = r.critical {
                health = .critical
                reasons.append("\(critical.reason): \(critical.message); not retried: fix it, then run `replicafs resume \(state.vm)`")
                state.lastError = critical.message
            } else if let failure = r.lastFailure, let next = r.nextRetryAt {
                health = .warning
                let at = ISOTime.format(Date(timeIntervalSince1970: next))
                reasons.append("\(failure.reason): \(failure.message); \(r.failures) failed attempt\(r.failures == 1 ? "" : "s"), next retry at \(at)")
                state.nextRetryAt = at
                state.nextRetryInSeconds = max(0, next - now)
                state.lastError = failure.message
            } else if let failure = r.lastFailure, failure.resync {
                health = .warning
                // Until the replicator picks the requirement up (its next tick), say why here.
                if state.resyncReason == nil { reasons.append("\(failure.reason): \(failure.message)") }
                state.lastError = failure.message
            }
            if let why = state.resyncReason {
                health = max(health, .warning)
                if state.state == .resynchronizing {
                    reasons.append("resynchronizing \(Int(state.resyncPercent ?? 0))%: \(why)")
                } else {
                    reasons.append("resync required: \(why)")
                }
            }
            if r.replicated, let since = lastCut ?? r.replicatedSince {
                let lag = max(0, now - since)
                state.lagSeconds = lag
                let rpo = r.policy.effectiveRPO
                if lag > rpo {
                    health = max(health, .warning)
                    reasons.append(String(format: "lag %.0f s exceeds the RPO of %.0f s", lag, rpo)
                        + (state.throttled == true ? " while throttled by the bandwidth limit" : ""))
                }
            }
            if state.throttled == true {
                // The limit at work, said as such: a lag that grows here is not a failure.
                let rate = BandwidthLimiter.Rate(bytesPerSecond: state.bandwidthLimitBytesPerSecond).description
                reasons.append(String(format: "throttled: sends wait on the bandwidth limit of %@ (%.1f s waited so far)",
                                      rate, state.throttledSeconds ?? 0))
            }
            let (due, missed) = Self.cycles(r, now: now)
            state.cyclesDueLastHour = due
            state.cyclesMissedLastHour = missed
            if due > 0, Double(missed) / Double(due) > Self.missedCycleLimit {
                health = max(health, .warning)
                reasons.append("\(missed) of \(due) replication cycles missed in the last hour (more than 20%)")
            }
            state.health = health
            state.healthReasons = reasons
        }
    }

    private static func count(_ r: inout Record, now: Double, missed: Bool) {
        let minute = Int(now / 60)
        var c = r.cycles[minute] ?? (0, 0)
        c.due += 1
        if missed { c.missed += 1 }
        r.cycles[minute] = c
        let oldest = minute - Int(missedCycleWindow / 60)
        if r.cycles.count > Int(missedCycleWindow / 60) + 1 { r.cycles = r.cycles.filter { $0.key > oldest } }
    }

    private static func cycles(_ r: Record, now: Double) -> (due: Int, missed: Int) {
        let oldest = Int(now / 60) - Int(missedCycleWindow / 60)
        return r.cycles.filter { $0.key > oldest }.values.reduce((0, 0)) { ($0.0 + $1.due, $0.1 + $1.missed) }
    }
}
