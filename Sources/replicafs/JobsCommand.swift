import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaStore
#if canImport(Glibc)
import Glibc
#endif

struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Replication jobs of the running mounts, with progress.")
    @Flag(help: "Print JSON.") var json = false

    struct Job: Codable {
        var vm: String
        var job: String
        var state: String
        var percent: Double?
        var bytesPerSecond: Double?
        var etaSeconds: Double?
        var lastPoint: Int?
        var lastError: String?
        /// Failover jobs: bytes the failed-over VM wrote since the failover.
        var bytesWritten: Int64?
        /// Replication jobs: "forward" (to the store) or "reverse" (a failover back to the
        /// original site), with lag, health and the retry count, alike for both.
        var direction: String?
        var lagSeconds: Double?
        var lastShipment: String?
        var health: String?
        var retryAttempt: Int?
        /// Forward replication: whether sends wait on the bandwidth limit now, and how long they waited in all.
        var throttled: Bool?
        var throttledSeconds: Double?
    }

    func run() throws {
        var jobs: [Job] = []
        for entry in MountRegistry().all() where MountRegistry.isAlive(entry.pid) {
            guard let response = try? call(entry, .status) else { continue }
            if let f = response.failover {
                let written = f.disks.reduce(Int64(0)) { $0 + $1.writtenBytes }
                jobs.append(Job(vm: f.vm, job: "\(f.kind) failover", state: f.frozen ? "frozen for failback" : "running on \(f.mountpoint)",
                                lastPoint: f.point, lastError: nil, bytesWritten: written))
                if let r = f.reverse {
                    let state = r.paused ? "paused (failback)" : !r.ready ? "waiting for reprotect" : r.nextRetryAt.map { "retry at \($0)" } ?? "every \(ReplicationPolicy.describe(r.intervalSeconds)) to \(r.destination)"
                    jobs.append(Job(vm: f.vm, job: "reverse replication", state: state, lastError: r.lastError, direction: r.direction,
                                    lagSeconds: r.lagSeconds, lastShipment: r.lastShipment, health: r.health.rawValue, retryAttempt: r.retryAttempt))
                }
            }
            guard let status = response.status else { continue }
            for v in status.vms {
                if v.state == .resynchronizing || v.state == .resyncRequired {
                    jobs.append(Job(vm: v.vm, job: "resync", state: v.state == .resynchronizing ? "running" : "waiting for the resync window",
                                    percent: v.resyncPercent, lastPoint: v.lastPoint, lastError: v.lastError))
                    continue
                }
                if v.state == .failedOver {
                    jobs.append(Job(vm: v.vm, job: "delta replication", state: "failed over: \(v.nextStep ?? "?")", lastPoint: v.lastPoint,
                                    lastError: v.lastError, direction: "forward", health: v.health.rawValue, retryAttempt: v.retryAttempt))
                    continue
                }
                let initial = v.state == .initialReplication || v.state == .initialReplicationScheduled
                jobs.append(Job(vm: v.vm, job: initial ? "initial replication" : "delta replication",
                                state: v.health == .critical ? "critical" : v.nextRetryAt.map { "retry at \($0)" }
                                    ?? (v.state == .initialReplicationScheduled ? "scheduled for \(v.initialScheduledAt ?? "?")" : (initial ? "running" : "protected")),
                                percent: initial ? v.initialPercent : nil, bytesPerSecond: initial ? v.initialMBps.map { $0 * 1e6 } : nil,
                                etaSeconds: initial ? v.initialETASeconds : nil, lastPoint: v.lastPoint, lastError: v.lastError,
                                direction: "forward", lagSeconds: v.lagSeconds, lastShipment: v.lastPointTime, health: v.health.rawValue,
                                retryAttempt: v.retryAttempt, throttled: v.throttled, throttledSeconds: v.throttledSeconds))
            }
        }
        if json { return try printJSON(jobs) }
        if jobs.isEmpty { print("no replication jobs") }
        for j in jobs {
            var line = "\(j.vm)\t\(j.job)\t\(j.state)"
            if let p = j.percent { line += String(format: "\t%.0f%%", p) }
            if let r = j.bytesPerSecond { line += String(format: "\t%.1f MB/s", r / 1e6) }
            if let e = j.etaSeconds { line += String(format: "\tETA %.0f s", e) }
            if let p = j.lastPoint { line += j.job.hasSuffix("failover") ? "\tpoint \(p)" : "\tlast point \(p)" }
            if let w = j.bytesWritten { line += "\t\(w) bytes written" }
            if j.job == "reverse replication" {
                line += "\tlast shipment \(j.lastShipment ?? "none")"
                if let l = j.lagSeconds { line += String(format: "\tlag %.1f s", l) }
                line += "\thealth \(j.health ?? "?")\tretries \(j.retryAttempt ?? 0)"
            }
            if j.throttled == true { line += String(format: "\tthrottled (%.1f s waited on the bandwidth limit)", j.throttledSeconds ?? 0) }
            if let e = j.lastError { line += "\tLAST ERROR: \(e)" }
            print(line)
        }
    }
}
