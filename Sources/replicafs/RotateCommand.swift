import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

/// Finds the running daemon of a mountpoint.
func daemonEntry(_ mountpoint: String) throws -> MountRegistry.Entry {
    let mp = try MountDaemon.absolutePath(mountpoint)
    guard let entry = MountRegistry().lookup(mp), MountRegistry.isAlive(entry.pid) else {
        throw ReplicaError("\(mp) is not served by a running replicafs daemon")
    }
    return entry
}

func call(_ entry: MountRegistry.Entry, _ op: ControlRequest.Operation) throws -> ControlResponse {
    let response = try UnixSocket.call(entry.socket, ControlRequest(op: op))
    guard response.ok else { throw ReplicaError(response.error ?? "the daemon refused \(op.rawValue)") }
    return response
}

struct RotateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Seal the current log of every image at one cut and start the next ones.",
        discussion: "Writes the kernel still caches are flushed through the mount first, so the cut holds every write made before the command started.")

    @Argument(help: "The mountpoint.")
    var mountpoint: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let entry = try daemonEntry(mountpoint)
        guard let status = try call(entry, .status).status else { throw ReplicaError("the daemon sent no status") }
        for image in status.images {
            let fd = try FileDescriptor.open(entry.mountpoint + "/" + image.name, O_RDONLY)
            defer { fd.close() }
            try fd.fsync()
        }
        guard let rotation = try call(entry, .rotate).rotation else { throw ReplicaError("the daemon sent no rotation result") }
        if json {
            try printJSON(rotation)
        } else {
            print("cut \(rotation.cutID): sealed \(rotation.sealed.count) log(s)")
            rotation.sealed.forEach { print("  \($0)") }
        }
    }
}

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
                let last = v.lastPoint.map { ", last point \($0) at \(v.lastPointTime ?? "?")" } ?? ""
                let lag = v.lagSeconds.map { String(format: ", lag %.1f s", $0) } ?? ""
                let err = v.lastError.map { ", LAST ERROR: \($0)" } ?? ""
                print("  VM \(v.vm): \(v.state)\(pct)\(last)\(lag), \(v.pendingBytes) bytes pending\(err)")
            }
        }
    }
}
