import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaMount
import ReplicaStore
#if canImport(Glibc)
import Glibc
import ReplicaSystem
#endif

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show running mounts, their images and active logs, and each protected VM's health.",
        discussion: "Exit status: the worst health of the VMs shown: 0 normal, 1 warning, 2 critical; 2 also when a mount's daemon is dead or does not answer (the line names the command that recovers it).")

    @Argument(help: "A VM name (its protected or failover mount), or a mountpoint (default: every running mount).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        // A VM name (no '/', not a mountpoint here): its mounts only.
        if let name = mountpoint, let vm = try vmName(name) { return try showVM(vm) }
        let entries = try mountpoint.map { [try registeredEntry($0)] } ?? MountRegistry().all()
        // Every registered daemon is asked, each with a short time limit: a dead, stopped or
        // stuck one is listed as such (with the command that recovers it), never waited for.
        var responses: [ControlResponse] = []
        var unserved: [UnservedMount] = []
        for entry in entries {
            if DaemonProcess(pid: entry.pid).state == .gone {
                unserved.append(UnservedMount(entry, daemon: "dead", error: "daemon pid \(entry.pid) is gone"))
                continue
            }
            do {
                responses.append(try call(entry, .status))
            } catch {
                let daemon = DaemonProcess(pid: entry.pid).state == .stopped ? "stopped" : "not answering"
                unserved.append(UnservedMount(entry, daemon: daemon, error: describe(error)))
            }
        }
        try show(responses: responses, unserved: unserved)
    }

    /// Prints the mounts' answers (and the mounts that did not answer); exits with the worst health.
    func show(responses: [ControlResponse], unserved: [UnservedMount]) throws {
        let statuses = responses.compactMap(\.status)
        let failovers = responses.compactMap(\.failover)
        // Scripts read the worst health from the exit status: 0 normal, 1 warning, 2 critical
        // (a mount nothing serves is critical).
        let worst = unserved.isEmpty ? (statuses.flatMap(\.vms).map(\.health) + failovers.compactMap(\.reverse?.health)).max() ?? .normal : .critical
        defer { if worst != .normal { Foundation.exit(worst.exitCode) } }
        if json {
            // One array: protected mounts, then failover mounts (each object has its pid and
            // mountpoint), then mounts whose daemon is dead or does not answer.
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let objects = try statuses.map { try encoder.encode(JSONEntry("protected-mount", $0)) }
                + failovers.map { try encoder.encode(JSONEntry("failover-mount", $0)) }
                + unserved.map { try encoder.encode(JSONEntry("unserved-mount", $0)) }
            print("[" + objects.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",\n") + "]")
            return
        }
        for u in unserved {
            print("\(u.mountpoint) <- \(u.disksDir) (pid \(u.pid)): DAEMON \(u.daemon.uppercased()): \(u.error)")
            print("  recover with: \(u.recover)")
        }
        if statuses.isEmpty && failovers.isEmpty && unserved.isEmpty { print("no replicafs mounts running") }
        for f in failovers {
            print("\(f.mountpoint) <- VM \(f.vm) at point \(f.point) of \(f.store) (\(f.kind) failover, pid \(f.pid)\(f.frozen ? ", frozen for failback" : ""))")
            for d in f.disks { print("  \(d.name): \(d.size) bytes, \(d.writtenBytes) bytes written since the failover") }
            if let r = f.reverse { printReverse(r, vm: f.vm) }
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
                let limit = v.maxBandwidth.map { limit in
                    String(format: ", bandwidth limit %@%@ (%.1f s waited on it)", limit, v.throttled == true ? ", THROTTLED now" : "", v.throttledSeconds ?? 0)
                } ?? ""
                print("  VM \(v.vm): \(v.state.rawValue)\(pct)\(last)\(lag), \(v.pendingBytes) bytes pending\(limit)\(err)")
                let retry = v.nextRetryInSeconds.map { String(format: ", retry %d in %.1f s at \(v.nextRetryAt ?? "?")", v.retryAttempt + 1, $0) } ?? ""
                print("    health: \(v.health.rawValue)\(retry)")
                for reason in v.healthReasons { print("      - \(reason)") }
            }
        }
    }
}

/// A registered mount whose daemon is dead, stopped or does not answer, as `status` lists it.
struct UnservedMount: Encodable {
    var pid: Int32
    var mountpoint: String
    var disksDir: String
    /// "dead", "stopped" or "not answering".
    var daemon: String
    var error: String
    /// The command that brings the mount back.
    var recover: String

    init(_ entry: MountRegistry.Entry, daemon: String, error: String) {
        pid = entry.pid
        mountpoint = entry.mountpoint
        disksDir = entry.disksDir
        self.daemon = daemon
        self.error = error
        // A failover mount's directory is <store>/<vm>/failover, holding its state.json.
        let dir = URL(fileURLWithPath: entry.disksDir)
        if dir.lastPathComponent == "failover", FileSystem.exists(entry.disksDir + "/state.json") {
            let vmDir = dir.deletingLastPathComponent()
            recover = "replicafs failover remount \(vmDir.lastPathComponent) --target \(vmDir.deletingLastPathComponent().path)"
        } else {
            recover = "replicafs mount \(entry.disksDir) \(entry.mountpoint)"
        }
    }
}

/// The registry entry of a mountpoint, whether or not its daemon still runs.
func registeredEntry(_ mountpoint: String) throws -> MountRegistry.Entry {
    let mp = try MountDaemon.absolutePath(mountpoint)
    guard let entry = MountRegistry().lookup(mp) else { throw ReplicaError("\(mp) is not served by a running replicafs daemon") }
    return entry
}

extension StatusCommand {
    /// `name` as a VM name, or nil when it names a mountpoint (a path, or a registered mount).
    func vmName(_ name: String) throws -> String? {
        if name.contains("/") || name == "." || name == ".." { return nil }
        if let mp = try? MountDaemon.absolutePath(name), MountRegistry().lookup(mp) != nil { return nil }
        // A directory here that no VM is named after: a mountpoint, as before.
        if FileSystem.isDirectory(name), VMRegistry().lookup(name) == nil { return nil }
        guard ProtectedVM.validName(name) else { throw ReplicaError("bad VM name '\(name)': use letters, digits, '.', '_' and '-'") }
        return name
    }

    /// `status <vm>`: the VM's protected mount (its images and state) and its failover mount on
    /// this host; when none runs, what this host knows of the VM and the command to run.
    func showVM(_ vm: String) throws {
        var responses: [ControlResponse] = []
        var unserved: [UnservedMount] = []
        let known = VMRegistry().lookup(vm)
        for entry in MountRegistry().all() {
            let protects = ProtectedVM.all(disksDir: entry.disksDir).first { $0.name == vm }
            let related = protects != nil || known?.failover?.mountpoint == entry.mountpoint || entry.disksDir.hasSuffix("/\(vm)/failover")
            // Every daemon is asked (a failover of the VM may run here from any store); one that
            // does not answer is listed only when it is the VM's.
            guard DaemonProcess(pid: entry.pid).state != .gone, var response = try? call(entry, .status) else {
                if related { unserved.append(UnservedMount(entry, daemon: "not answering", error: "daemon pid \(entry.pid) does not answer")) }
                continue
            }
            if var status = response.status {
                let disks = Set(protects?.disks ?? [])
                status.vms = status.vms.filter { $0.vm == vm }
                status.images = status.images.filter { disks.contains($0.name) }
                status.skipped = nil
                response.status = status.vms.isEmpty && status.images.isEmpty ? nil : status
            }
            if response.failover?.vm != vm { response.failover = nil }
            if response.status != nil || response.failover != nil { responses.append(response) }
        }
        guard responses.isEmpty && unserved.isEmpty else { return try show(responses: responses, unserved: unserved) }
        guard let known else { throw VMRegistry.notRegistered(vm, command: "status", option: nil) }
        if let f = known.failover {
            throw ReplicaError("VM \(vm) has a \(f.kind) failover started here whose mount on \(f.mountpoint) is not running: `replicafs failover remount \(vm)`")
        }
        guard let dir = known.disksDir else {
            throw ReplicaError("VM \(vm) is known here only from its store \(known.target): `replicafs points \(vm)` lists its recovery points")
        }
        throw ReplicaError("VM \(vm) is protected in \(dir) but no running mount serves it: `replicafs mount \(dir) <mountpoint>`")
    }

    /// One failover mount's reverse replication, as a protected VM's replication is shown.
    func printReverse(_ r: ReverseReplicationStatus, vm: String) {
        let last = r.lastShipment.map { ", last shipment \($0) (\(r.lastShipmentBytes) bytes)" } ?? ", no shipment yet"
        let lag = r.lagSeconds.map { String(format: ", lag %.1f s", $0) } ?? ""
        let state = r.paused ? "paused (failback)" : r.ready ? "every \(ReplicationPolicy.describe(r.intervalSeconds))" : "waiting for reprotect"
        let err = r.lastError.map { ", LAST ERROR: \($0)" } ?? ""
        print("  reverse replication -> \(r.destination): \(state)\(last)\(lag), \(r.pendingBytes) bytes pending\(err)")
        let retry = r.nextRetryInSeconds.map { String(format: ", retry %d in %.1f s at \(r.nextRetryAt ?? "?")", r.retryAttempt + 1, $0) } ?? ""
        print("    health: \(r.health.rawValue)\(retry)")
        for reason in r.healthReasons { print("      - \(reason)") }
    }
}
