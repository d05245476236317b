import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect",
        abstract: "Protect a VM: a named group of images replicated to a target store with one policy, cut together.",
        discussion: "A running mount daemon of the disks-dir picks the protection up within a second and starts the initial replication.")

    @Argument(help: "VM name.") var vm: String
    @Option(help: "Directory holding the VM's images.") var disksDir: String
    @Option(name: .customLong("disk"), help: "An image of the VM (repeat for each disk).") var disks: [String]
    @Option(help: "Target store directory (the secondary site).") var target: String
    @Option(help: "continuous, 30s, 5m, 15m, or any duration.") var copyFrequency = "5m"
    @Option(help: "How long recovery points are kept (e.g. 24h).") var retention = "24h"
    @Option(help: "Interval of scheduled app-consistent points (1h to 12h); off when absent.") var appConsistentEvery: String?
    @Option(help: "Command run before an app-consistent cut (e.g. fsfreeze -f /mnt/fs).") var quiesce: String?
    @Option(help: "Command run after an app-consistent cut, also when it failed.") var thaw: String?
    @Flag(help: "Compress logs in transit (zlib).") var compress = false
    @Option(help: "When the initial replication starts: now, HH:MM (next, local time) or an ISO-8601 time.") var initial = "now"

    func run() throws {
        guard ProtectedVM.validName(vm) else { throw ReplicaError("bad VM name '\(vm)': use letters, digits, - _ .") }
        guard FileSystem.isDirectory(disksDir) else { throw ReplicaError("disks directory \(disksDir) does not exist") }
        let dir = try FileSystem.realPath(disksDir)
        guard !disks.isEmpty else { throw ReplicaError("name at least one --disk") }
        let images = try DiskSet.imageNames(in: dir)
        for disk in disks where !images.contains(disk) {
            throw ReplicaError("disk \(disk) is not an image in \(dir)")
        }
        guard Set(disks).count == disks.count else { throw ReplicaError("a disk is named twice") }
        guard FileSystem.isDirectory(target) else { throw ReplicaError("target store \(target) does not exist") }
        guard access(target, W_OK) == 0 else { throw ReplicaError("target store \(target) is not writable") }
        let existing = ProtectedVM.all(disksDir: dir)
        if existing.contains(where: { $0.name == vm }) { throw ReplicaError("VM \(vm) is already protected") }
        for other in existing {
            if let shared = other.disks.first(where: disks.contains) {
                throw ReplicaError("disk \(shared) is already protected by VM \(other.name)")
            }
        }
        let store = try TargetStore(root: target)
        if store.hasVM(vm) { throw ReplicaError("target store \(store.root) already holds a replica of VM \(vm)") }
        var policy = ReplicationPolicy()
        policy.copyFrequency = try ReplicationPolicy.seconds(copyFrequency)
        policy.retention = try ReplicationPolicy.seconds(retention)
        if let every = appConsistentEvery { policy.appConsistentEvery = try ReplicationPolicy.seconds(every) }
        policy.quiesce = quiesce
        policy.thaw = thaw
        policy.compress = compress
        policy.initialAt = try ReplicationPolicy.startTime(initial)
        try ProtectedVM(name: vm, disks: disks, target: store.root, policy: policy).save(disksDir: dir)
        print("protected \(vm): \(disks.joined(separator: ", ")) -> \(store.root)")
    }
}

struct UnprotectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unprotect", abstract: "End a VM's protection.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Directory holding the VM's images.") var disksDir: String
    @Flag(help: "Also delete the replica and its recovery points from the target store.") var deleteReplica = false

    func run() throws {
        let dir = try FileSystem.realPath(disksDir)
        guard let config = ProtectedVM.all(disksDir: dir).first(where: { $0.name == vm }) else {
            throw ReplicaError("unknown VM \(vm): not protected in \(dir)")
        }
        try FileSystem.remove(ProtectedVM.path(disksDir: dir, vm: vm))
        if deleteReplica { try TargetStore(root: config.target).delete(vm: vm) }
        print("unprotected \(vm)\(deleteReplica ? " and deleted its replica" : "")")
    }
}

/// Finds the running daemon whose disks-dir protects `vm`.
func daemonProtecting(_ vm: String) throws -> MountRegistry.Entry {
    for entry in MountRegistry().all() where MountRegistry.isAlive(entry.pid) {
        if ProtectedVM.all(disksDir: entry.disksDir).contains(where: { $0.name == vm }) { return entry }
    }
    throw ReplicaError("unknown VM \(vm): no running mount protects it")
}

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Cut a recovery point now and wait until the target has committed it.")
    @Argument(help: "VM name.") var vm: String
    @Flag(help: "Run the quiesce command first and mark the point app-consistent (thaw always runs).") var appConsistent = false
    @Flag(help: "Return once the point is committed (the default; kept for scripts).") var wait = false
    @Flag(help: "Print the point as JSON.") var json = false

    func run() throws {
        let entry = try daemonProtecting(vm)
        let response = try UnixSocket.call(entry.socket, ControlRequest(op: .snapshot, vm: vm, appConsistent: appConsistent))
        guard response.ok, let point = response.point else { throw ReplicaError(response.error ?? "snapshot failed") }
        if json { return try printJSON(PointsCommand.Row(point)) }
        print("recovery point \(point.id) (\(point.consistency.rawValue)-consistent) committed for \(vm)")
    }
}

struct PointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "points", abstract: "List a VM's recovery points from the target store alone.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String
    @Flag(help: "Print JSON.") var json = false

    struct Row: Codable {
        var id: Int
        var time: String
        var consistency: String
        var cut: UInt64
        var disks: [String: Int64]
        init(_ p: RecoveryPoint) {
            id = p.id
            time = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(p.timeNanos) / 1e9))
            consistency = p.consistency.rawValue
            cut = p.cut
            disks = p.diskSizes
        }
    }

    func run() throws {
        let rows = try TargetStore(root: target).points(vm).map(Row.init)
        if json { return try printJSON(rows) }
        if rows.isEmpty { print("\(vm): no recovery points yet") }
        for r in rows { print("\(r.id)\t\(r.time)\t\(r.consistency)\tcut \(r.cut)") }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write one disk of a VM as of a recovery point to a file.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String
    @Option(help: "A point id, latest or latest-app.") var point: String
    @Option(help: "The disk (image name).") var disk: String
    @Option(help: "The file to write.") var to: String

    func run() throws {
        let selector = try TargetStore.PointSelector(point)
        guard !FileSystem.exists(to) else { throw ReplicaError("\(to) already exists: export will not overwrite it") }
        let p = try TargetStore(root: target).export(vm: vm, point: selector, disk: disk, to: to)
        print("exported \(disk) of \(vm) at point \(p.id) to \(to)")
    }
}

struct JobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Replication jobs of the running mounts, with progress.")
    @Flag(help: "Print JSON.") var json = false

    struct Job: Codable {
        var vm: String
        var job: String
        var state: String
        var percent: Double?
        var mbPerSecond: Double?
        var etaSeconds: Double?
        var lastPoint: Int?
        var lastError: String?
    }

    func run() throws {
        var jobs: [Job] = []
        for entry in MountRegistry().all() where MountRegistry.isAlive(entry.pid) {
            guard let status = try? call(entry, .status).status else { continue }
            for v in status.vms {
                let initial = v.state.hasPrefix("initial replication")
                jobs.append(Job(vm: v.vm, job: initial ? "initial replication" : "delta replication",
                                state: v.state.hasSuffix("scheduled") ? "scheduled for \(v.initialScheduledAt ?? "?")" : (initial ? "running" : "protected"),
                                percent: initial ? v.initialPercent : nil, mbPerSecond: initial ? v.initialMBps : nil,
                                etaSeconds: initial ? v.initialETASeconds : nil, lastPoint: v.lastPoint, lastError: v.lastError))
            }
        }
        if json { return try printJSON(jobs) }
        if jobs.isEmpty { print("no replication jobs") }
        for j in jobs {
            var line = "\(j.vm)\t\(j.job)\t\(j.state)"
            if let p = j.percent { line += String(format: "\t%.0f%%", p) }
            if let r = j.mbPerSecond { line += String(format: "\t%.1f MB/s", r) }
            if let e = j.etaSeconds { line += String(format: "\tETA %.0f s", e) }
            if let p = j.lastPoint { line += "\tlast point \(p)" }
            if let e = j.lastError { line += "\tLAST ERROR: \(e)" }
            print(line)
        }
    }
}
