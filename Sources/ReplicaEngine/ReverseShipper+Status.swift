import Foundation
import ReplicaLog
import ReplicaSource
import ReplicaSystem

/// What reverse replication has done: shipments, failures in a row and the retry they wait
/// for (the forward schedule, RetryPolicy), for `status` and for the daemon's shipping loop.
struct ShipmentRecord: Sendable {
    var started = Date()
    var paused = false
    var lastSuccess: Date?
    var lastBytes: Int64 = 0
    var bytesShipped: Int64 = 0
    var shipments = 0
    var failures = 0
    var lastFailure: Date?
    var lastError: String?
    var retry = RetryPolicy(timeScale: ProcessInfo.processInfo.environment[RetryPolicy.timeScaleVariable].flatMap(Double.init) ?? 1)

    mutating func succeeded(bytes: Int64, now: Date) {
        lastSuccess = now
        lastBytes = bytes
        bytesShipped += bytes
        shipments += 1
        failures = 0
        lastError = nil
    }

    mutating func failed(_ error: Error, now: Date) {
        failures += 1
        lastFailure = now
        lastError = "\(error)"
    }

    /// After failures: when the next attempt may run.
    var nextRetry: Date? {
        guard failures > 0, let lastFailure else { return nil }
        return lastFailure.addingTimeInterval(retry.delay(afterFailures: failures))
    }
}

extension ReverseShipper {
    /// Whether the periodic loop ships now: `interval` after the last attempt, or after a
    /// failure when the back-off says.
    public func due(interval: Double, now: Date = Date()) -> Bool {
        withRecord { record in
            if let next = record.nextRetry { return now >= next }
            let last = [record.lastSuccess, record.started].compactMap { $0 }.max() ?? record.started
            return now.timeIntervalSince(last) >= interval
        }
    }

    /// Reverse replication as `status` shows it.
    public func status(destination: String, interval: Double, ready: Bool, now: Date = Date()) -> ReverseReplicationStatus {
        let r = withRecord { $0 }
        var s = ReverseReplicationStatus(destination: destination, intervalSeconds: interval, ready: ready, paused: r.paused)
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        s.lastShipment = r.lastSuccess.map(iso.string)
        s.lastShipmentBytes = r.lastBytes
        s.bytesShipped = r.bytesShipped
        s.shipments = r.shipments
        s.lagSeconds = ready ? now.timeIntervalSince(r.lastSuccess ?? r.started) : nil
        // Records past each log's header: what the next shipment applies.
        s.pendingBytes = ((try? FileSystem.list(logDirectory)) ?? []).reduce(Int64(0)) { sum, name in
            sum + max(0, Int64((try? FileSystem.stat(logDirectory + "/" + name).st_size) ?? 0) - Int64(LogHeader.size))
        }
        s.retryAttempt = r.failures
        s.lastError = r.lastError
        if let next = r.nextRetry {
            s.nextRetryAt = iso.string(from: next)
            s.nextRetryInSeconds = max(0, next.timeIntervalSince(now))
            s.health = .warning
            s.healthReasons.append("shipment failed \(r.failures) time(s) in a row: \(r.lastError ?? "?"); retry \(r.failures + 1) at \(s.nextRetryAt!)")
        }
        let rpo = max(60, 2 * interval)
        if let lag = s.lagSeconds, ready, !s.paused, lag > rpo {
            s.health = .warning
            s.healthReasons.append(String(format: "lag %.0f s is past %.0f s (twice the copy frequency, at least 1 min)", lag, rpo))
        }
        if !ready { s.healthReasons.append("waiting for reprotect to bring \(destination) level") }
        return s
    }
}
