import ArgumentParser
import Foundation
import ReplicaEngine
import ReplicaMount
import ReplicaStore
import ReplicaSystem
import ReplicaRecovery

/// `replicafs failback`: bring a failed-over VM home. minimize-downtime copies the differing
/// blocks while the VM runs, then stops its writes (freeze) and copies the final delta;
/// full-download stops the writes first and copies whole disks. Then the switch: the failover
/// mount goes, the store's replica is rebased on the disks now at home (earlier points kept),
/// and protection runs in the original direction again once the disks directory is mounted.
struct FailbackCommand: ParsableCommand {
    typealias Mode = FailoverCoordinator.FailbackMode

    static let configuration = CommandConfiguration(
        commandName: "failback", abstract: "Fail a failed-over VM back to its original site (or a new one).")

    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @Option(help: "minimize-downtime or full-download.") var mode: Mode?
    @Flag(help: "Abandon a failback that stopped after freezing the failover mount: it takes writes again.")
    var abort = false
    @OptionGroup var destination: DisksDirOption
    /// The disks directory to bring the disks to: --disks-dir, else where the failover came
    /// from (or was reprotected to), else the one this host registered for the VM.
    var to: String? { destination.disksDir ?? registeredHome(vm, target: target) }
    @Option(help: "Block size for the checksum comparison, in bytes.") var blockSize = 1 << 20
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        if abort && mode != nil { throw ReplicaError("--abort takes no --mode", code: .badRequest) }
        if !abort && mode == nil { throw ReplicaError("give --mode minimize-downtime or --mode full-download", code: .badRequest) }
        guard blockSize >= 4096, blockSize <= 64 << 20, blockSize % 4096 == 0 else {
            throw ReplicaError("bad --block-size \(blockSize): a multiple of 4096 from 4 KiB to 64 MiB", code: .badRequest)
        }
    }

    func run() throws {
        let store = try openTargetStore(target, options: stored.storeOptions)
        if abort {
            guard mode == nil else { throw ReplicaError("--abort takes no --mode", code: .badRequest) }
            let state = try coordinator(store, options: stored.storeOptions).abortFailback(vm: vm)
            print("failback of VM \(vm) abandoned: \(state.mountpoint) takes writes again")
            return
        }
        guard let mode else { throw ReplicaError("give --mode minimize-downtime or --mode full-download", code: .badRequest) }
        // The step lines end the bar's line before they print.
        let reporter = ProgressReporter()
        let failover = FailoverCoordinator(store: store, mounts: ProcessFailoverMounts(options: stored.storeOptions), progress: { line in
            reporter.finish()
            if !json { print(line) }
        })
        failover.copyProgress = { label, done, total in reporter.update(label, done: done, total: total) }
        failover.siteOptions = stored.storeOptions
        let report = try failover.failback(vm: vm, mode: mode, to: to, blockSize: blockSize)
        reporter.finish()
        if json { return try printJSON(report) }
        print("failed back VM \(vm) to \(report.to) (\(mode.rawValue)): \(report.bytesSent) bytes sent of \(report.diskBytes) (\(report.bytesSentRunning) while running, \(report.bytesSentFinal) in \(String(format: "%.1f", report.downtimeSeconds)) s of downtime); store point \(report.point) holds the failed-back disks")
        print("next: `replicafs mount \(report.to) <mountpoint>` resumes protection to \(store.location)")
    }
}

extension FailoverCoordinator.FailbackMode: ExpressibleByArgument {}
