import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaStore
import ReplicaSystem
import ReplicaSource

/// `replicafs reprotect`: reverse replication after a planned or unplanned failover. The
/// original site's disks are the starting replica: fixed-size blocks are compared by SHA-256
/// and only those that differ travel from the failed-over disks, while the VM keeps running.
struct ReprotectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reprotect",
        abstract: "Replicate a failed-over VM back to the original site (only differing blocks travel).")

    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory the VM failed over from.") var target: String
    @Option(help: "The original site's disks directory (default: the one the failover came from).") var to: String?
    @Option(help: "Block size for the checksum comparison, in bytes.") var blockSize = 1 << 20
    @Option(help: "How often the failover mount ships its reverse logs (30s, 5m, ...).") var copyFrequency = "30s"
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let store = try TargetStore(root: target)
        var (state, destination) = try failedOverVM(vm, store: store, to: to)
        state.reverseTo = destination
        state.reverseReady = false
        state.reverseInterval = max(1, try ReplicationPolicy.seconds(copyFrequency, what: "--copy-frequency"))
        try store.saveFailover(state)
        let entry = try daemonEntry(state.mountpoint)
        // The cut: from here on every change is logged; the block copy below may be fuzzy,
        // the logs shipped after it make the original site exact.
        _ = try call(entry, .reprotect)
        var report = try reverseSync(state, to: destination, blockSize: blockSize, quiet: json, step: "reprotect")
        let shipped = try call(entry, .ship).shippedBytes ?? 0
        report.sent += shipped
        state = try store.failoverState(vm) ?? state
        state.reverseReady = true
        state.reverseSyncs += 1
        state.reverseBytesSent += report.sent
        state.lastReverseSync = ISO8601DateFormatter().string(from: Date())
        try store.saveFailover(state)
        if json { return try printJSON(report) }
        print("reprotected VM \(vm) towards \(destination): compared \(report.compared) bytes, sent \(report.sent) (\(shipped) from the change logs) in \(String(format: "%.1f", report.seconds)) s; changes now ship every \(copyFrequency)")
        print("next: `replicafs failback \(vm) --target \(store.root) --mode minimize-downtime`")
    }
}

/// What one reverse pass moved.
struct ReverseSyncReport: Codable {
    struct DiskSync: Codable {
        var compared: Int64
        var sent: Int64
        var differingBlocks: Int?
    }
    var disks: [String: DiskSync]
    var compared: Int64
    var sent: Int64
    var seconds: Double
}

/// The failover of `vm` that reprotect and failback work on, and the disks directory they
/// write to (created if it is gone: failing back to a new machine).
func failedOverVM(_ vm: String, store: TargetStore, to: String?) throws -> (FailoverState, String) {
    guard store.hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(store.root)") }
    guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) is not failed over") }
    guard state.kind != .test else { throw ReplicaError("VM \(vm) is in a test failover: clean it up; only a real failover fails back") }
    guard let dir = to ?? state.reverseTo ?? state.sourceDisksDir else {
        throw ReplicaError("the original site of VM \(vm) is not known: give --to <disks-dir>")
    }
    guard let entry = MountRegistry().lookup(state.mountpoint), MountRegistry.isAlive(entry.pid) else {
        throw ReplicaError("the failover mount of VM \(vm) on \(state.mountpoint) is not running: `replicafs failover remount \(vm) --target \(store.root)`")
    }
    let real = FileSystem.exists(dir) ? try FileSystem.realPath(dir) : dir
    if let running = MountRegistry().all().first(where: { MountRegistry.isAlive($0.pid) && $0.disksDir == real }) {
        throw ReplicaError("\(real) is still served by the replicafs mount on \(running.mountpoint): unmount it first")
    }
    // Checked: now the destination may be created (failing back to a new machine).
    try FileSystem.mkdirs(dir)
    return (state, try FileSystem.realPath(dir))
}

/// Makes the original site's disks equal the failed-over disks, block by block, sending only
/// blocks whose SHA-256 differs (or, `fullCopy`, every byte). Prints progress unless quiet.
func reverseSync(_ state: FailoverState, to destination: String, blockSize: Int, quiet: Bool, step: String,
                 fullCopy: Bool = false) throws -> ReverseSyncReport {
    let started = Date()
    var report = ReverseSyncReport(disks: [:], compared: 0, sent: 0, seconds: 0)
    let sync = BlockSync(blockSize: blockSize)
    for disk in state.disks {
        let source = state.mountpoint + "/" + disk, target = try DiskEntries.pathForWriting(disk, in: destination)
        if fullCopy {
            // Whole disk, no comparison: every byte travels.
            let n = try SparseCopy.copy(from: source, to: target)
            report.disks[disk] = ReverseSyncReport.DiskSync(compared: 0, sent: n, differingBlocks: nil)
            report.sent += n
            if !quiet { print("\(step): \(disk) 100%, \(n) bytes sent") }
            continue
        }
        var lastShown = Date.distantPast
        let r = try sync.sync(from: source, to: target) { p in
            guard !quiet, Date().timeIntervalSince(lastShown) >= 1 || p.bytesDone == p.bytesTotal else { return }
            lastShown = Date()
            let pct = p.bytesTotal > 0 ? Double(p.bytesDone) * 100 / Double(p.bytesTotal) : 100
            print("\(step): \(disk) \(String(format: "%.0f", pct))%, \(p.bytesSent) bytes sent")
        }
        report.disks[disk] = ReverseSyncReport.DiskSync(compared: r.bytesCompared, sent: r.bytesSent, differingBlocks: r.differingBlocks)
        report.compared += r.bytesCompared
        report.sent += r.bytesSent
    }
    report.seconds = Date().timeIntervalSince(started)
    return report
}
