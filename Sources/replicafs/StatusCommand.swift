import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show running mounts, their images and active logs, and each protected VM's health.",
        discussion: "Exit status: the worst health of the VMs shown: 0 normal, 1 warning, 2 critical.")

    @Argument(help: "A mountpoint (default: every running mount).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let entries = try mountpoint.map { [try daemonEntry($0)] }
            ?? MountRegistry().all().filter { MountRegistry.isAlive($0.pid) }
        let responses = try entries.map { try call($0, .status) }
        let statuses = responses.compactMap(\.status)
        let failovers = responses.compactMap(\.failover)
        // Scripts read the worst health from the exit status: 0 normal, 1 warning, 2 critical.
        let worst = statuses.flatMap(\.vms).map(\.health).max() ?? .normal
        defer { if worst != .normal { Foundation.exit(worst.exitCode) } }
        if json {
            // One array: protected mounts, then failover mounts (each object has its pid and mountpoint).
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let objects = try statuses.map { try encoder.encode($0) } + failovers.map { try encoder.encode($0) }
            print("[" + objects.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",\n") + "]")
            return
        }
        if statuses.isEmpty && failovers.isEmpty { print("no replicafs mounts running") }
        for f in failovers {
            print("\(f.mountpoint) <- VM \(f.vm) at point \(f.point) of \(f.store) (\(f.kind) failover, pid \(f.pid)\(f.frozen ? ", frozen for failback" : ""))")
            for d in f.disks { print("  \(d.name): \(d.size) bytes, \(d.writtenBytes) bytes written since the failover") }
        }
        for s in statuses {
            print("\(s.mountpoint) <- \(s.disksDir) (pid \(s.pid), writeback cache \(s.writebackCache ? "on" : "off"))")
            for i in s.images {
                let crash = i.recoveredFromCrash ? ", recovered after an unclean shutdown" : ""
                let err = i.logError.map { ", LOG ERROR: \($0)" } ?? ""
                print("  \(i.name): \(i.size) bytes, log #\(i.sequence) \(i.records) records \(i.logBytes) bytes\(crash)\(err)")
            }
            for skipped in s.skipped ?? [] { print("  skipped \(skipped.name): \(skipped.reason), not served") }
            for v in s.vms {
                var pct = v.state == .initialReplication ? " \(Int(v.initialPercent ?? 0))%" : ""
                if let eta = v.initialETASeconds, v.state == .initialReplication {
                    pct += String(format: " (%.1f MB/s, ETA %.0f s)", v.initialMBps ?? 0, eta)
                }
                if let at = v.initialScheduledAt { pct += " at \(at)" }
                if v.state == .resynchronizing { pct = " \(Int(v.resyncPercent ?? 0))%" }
                if let why = v.resyncReason { pct += " (\(why))" }
                let last = v.lastPoint.map { ", last point \($0) at \(v.lastPointTime ?? "?")" } ?? ""
                let lag = v.lagSeconds.map { String(format: ", lag %.1f s", $0) } ?? ""
                let err = v.lastError.map { ", LAST ERROR: \($0)" } ?? ""
                print("  VM \(v.vm): \(v.state.rawValue)\(pct)\(last)\(lag), \(v.pendingBytes) bytes pending\(err)")
                let retry = v.nextRetryInSeconds.map { String(format: ", retry %d in %.1f s at \(v.nextRetryAt ?? "?")", v.retryAttempt + 1, $0) } ?? ""
                print("    health: \(v.health.rawValue)\(retry)")
                for reason in v.healthReasons { print("      - \(reason)") }
            }
        }
    }
}
