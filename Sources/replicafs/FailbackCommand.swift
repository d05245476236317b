import ArgumentParser
import Foundation
import ReplicaEngine
import ReplicaMount
import ReplicaStore
import ReplicaSystem

/// `replicafs failback`: bring a failed-over VM home. minimize-downtime copies the differing
/// blocks while the VM runs, then stops its writes (freeze) and copies the final delta;
/// full-download stops the writes first and copies whole disks. Then the switch: the failover
/// mount goes, the store's replica is rebased on the disks now at home (earlier points kept),
/// and protection runs in the original direction again once the disks directory is mounted.
struct FailbackCommand: ParsableCommand {
    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case minimizeDowntime = "minimize-downtime"
        case fullDownload = "full-download"
    }

    static let configuration = CommandConfiguration(
        commandName: "failback", abstract: "Fail a failed-over VM back to its original site (or a new one).")

    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory the VM failed over from.") var target: String
    @Option(help: "minimize-downtime or full-download.") var mode: Mode?
    @Flag(help: "Abandon a failback that stopped after freezing the failover mount: it takes writes again.")
    var abort = false
    @Option(help: "The disks directory to fail back to (default: the original site; created if gone).") var to: String?
    @Option(help: "Block size for the checksum comparison, in bytes.") var blockSize = 1 << 20
    @Flag(help: "Print JSON.") var json = false

    struct Report: Codable {
        var vm: String
        var mode: String
        var to: String
        /// Bytes sent while the VM kept running, and during the downtime.
        var bytesSentRunning: Int64
        var bytesSentFinal: Int64
        var bytesSent: Int64
        var diskBytes: Int64
        var downtimeSeconds: Double
        var seconds: Double
        var point: Int
    }

    func run() throws {
        let started = Date()
        let store = try TargetStore(root: target)
        if abort {
            guard mode == nil else { throw ReplicaError("--abort takes no --mode") }
            guard store.hasVM(vm), let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) is not failed over") }
            _ = try call(try daemonEntry(state.mountpoint), .unfreeze)
            print("failback of VM \(vm) abandoned: \(state.mountpoint) takes writes again")
            return
        }
        guard let mode else { throw ReplicaError("give --mode minimize-downtime or --mode full-download") }
        var (state, destination) = try failedOverVM(vm, store: store, to: to)
        let say: (String) -> Void = { line in if !json { print(line) } }
        let entry = try daemonEntry(state.mountpoint)
        // Reprotected: the reverse logs carry every change since the original site was synced.
        let viaLogs = state.reverseReady && state.reverseTo == destination
        // 1. While the VM runs: bring the original site close (minimize-downtime only).
        var running = ReverseSyncReport(disks: [:], compared: 0, sent: 0, seconds: 0)
        if mode == .minimizeDowntime {
            if viaLogs {
                say("failback step 1/4: shipping the change logs while VM \(vm) keeps running")
                running.sent = try call(entry, .ship).shippedBytes ?? 0
            } else {
                say("failback step 1/4: copying differing blocks while VM \(vm) keeps running")
                running = try reverseSync(state, to: destination, blockSize: blockSize, quiet: json, step: "failback")
            }
        }
        // 2. Stop the VM's writes: push the kernel's cached writes through, then freeze.
        say("failback step 2/4: stopping writes on \(state.mountpoint)")
        let downtimeStart = Date()
        do {
            try MountDaemon.flush(state.disks, in: state.mountpoint)
            _ = try call(entry, .freeze)
        } catch {
            throw ReplicaError("failback step 2 (stop writes) failed: \(error); the VM keeps running on the failover mount: run failback again")
        }
        // 3. The final delta (or every byte).
        say("failback step 3/4: copying the final changes")
        var final = ReverseSyncReport(disks: [:], compared: 0, sent: 0, seconds: 0)
        do {
            if mode == .minimizeDowntime && viaLogs {
                final.sent = try call(entry, .ship).shippedBytes ?? 0
            } else {
                final = try reverseSync(state, to: destination, blockSize: blockSize, quiet: json, step: "failback",
                                        fullCopy: mode == .fullDownload)
            }
        } catch {
            throw ReplicaError("failback step 3 (final copy) failed: \(error); the failover mount is frozen: run failback again to retry")
        }
        // A VM still running wrote after the freeze: those writes were refused, not copied.
        _ = try? MountDaemon.flush(state.disks, in: state.mountpoint)
        let refused = (try? call(entry, .status).failover)?.disks.reduce(0) { $0 + $1.refusedWrites } ?? 0
        guard refused == 0 else {
            throw ReplicaError("failback stopped before the switch: \(refused) writes were refused after the freeze, so the VM is still running on \(state.mountpoint): shut it down, then run failback again")
        }
        // 4. Switch: the failover mount goes, the replica follows the disks now at home.
        say("failback step 4/4: switching VM \(vm) back to \(destination)")
        let point: RecoveryPoint
        var downtimeEnd = Date()
        do {
            try stopMount(state.mountpoint)
            // The disks at home are complete and nothing else writes them: the VM may start there.
            downtimeEnd = Date()
            for log in try TargetStore.logs(in: destination, of: state.disks) { try FileSystem.remove(log) }
            var sources: [String: String] = [:]
            for d in state.disks { sources[d] = destination + "/" + d }
            (point, _) = try store.rebase(vm: vm, sources: sources, blockSize: blockSize)
            // The disks were written here, not through a mount: that is not a change behind
            // the replica's back (the rebase made the replica equal them).
            try ResyncScheduler.recordFingerprints(disksDir: destination, images: state.disks)
            if !ProtectedVM.all(disksDir: destination).contains(where: { $0.name == vm }) {
                // Failing back to a new location: protection goes with the disks.
                try ProtectedVM(name: vm, disks: state.disks, target: store.root, policy: ReplicationPolicy()).save(disksDir: destination)
            }
            try store.discardFailover(vm: vm)
        } catch {
            throw ReplicaError("failback step 4 (switch) failed: \(error); the disks at \(destination) are complete: `replicafs failover remount \(vm) --target \(store.root)`, then run failback again")
        }
        state.reverseTo = destination
        let diskBytes = try state.disks.reduce(Int64(0)) { $0 + Int64(try FileSystem.stat(destination + "/" + $1).st_size) }
        let report = Report(vm: vm, mode: mode.rawValue, to: destination, bytesSentRunning: running.sent, bytesSentFinal: final.sent,
                            bytesSent: running.sent + final.sent, diskBytes: diskBytes,
                            downtimeSeconds: downtimeEnd.timeIntervalSince(downtimeStart), seconds: Date().timeIntervalSince(started),
                            point: point.id)
        if json { return try printJSON(report) }
        print("failed back VM \(vm) to \(destination) (\(mode.rawValue)): \(report.bytesSent) bytes sent of \(diskBytes) (\(running.sent) while running, \(final.sent) in \(String(format: "%.1f", report.downtimeSeconds)) s of downtime); store point \(point.id) holds the failed-back disks")
        print("next: `replicafs mount \(destination) <mountpoint>` resumes protection to \(store.root)")
    }
}
