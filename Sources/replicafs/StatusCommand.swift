import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show running mounts, their images and active logs.")

    @Argument(help: "A mountpoint (default: every running mount).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let entries = try mountpoint.map { [try daemonEntry($0)] }
            ?? MountRegistry().all().filter { MountRegistry.isAlive($0.pid) }
        let statuses = try entries.compactMap { try call($0, .status).status }
        if json { return try printJSON(statuses) }
        if statuses.isEmpty { print("no replicafs mounts running") }
        for s in statuses {
            print("\(s.mountpoint) <- \(s.disksDir) (pid \(s.pid), writeback cache \(s.writebackCache ? "on" : "off"))")
            for i in s.images {
                let crash = i.recoveredFromCrash ? ", recovered after an unclean shutdown" : ""
                let err = i.logError.map { ", LOG ERROR: \($0)" } ?? ""
                print("  \(i.name): \(i.size) bytes, log #\(i.sequence) \(i.records) records \(i.logBytes) bytes\(crash)\(err)")
            }
            for v in s.vms {
                var pct = v.state == "initial replication" ? " \(Int(v.initialPercent ?? 0))%" : ""
                if let eta = v.initialETASeconds, v.state == "initial replication" {
                    pct += String(format: " (%.1f MB/s, ETA %.0f s)", v.initialMBps ?? 0, eta)
                }
                if let at = v.initialScheduledAt { pct += " at \(at)" }
                if v.state == "resynchronizing" { pct = " \(Int(v.resyncPercent ?? 0))%" }
                if let why = v.resyncReason { pct += " (\(why))" }
                let last = v.lastPoint.map { ", last point \($0) at \(v.lastPointTime ?? "?")" } ?? ""
                let lag = v.lagSeconds.map { String(format: ", lag %.1f s", $0) } ?? ""
                let err = v.lastError.map { ", LAST ERROR: \($0)" } ?? ""
                print("  VM \(v.vm): \(v.state)\(pct)\(last)\(lag), \(v.pendingBytes) bytes pending\(err)")
            }
        }
    }
}
