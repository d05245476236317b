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

    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @OptionGroup var destination: DisksDirOption
    /// The disks directory to bring the disks to: --disks-dir, else where the failover came
    /// from (or was reprotected to), else the one this host registered for the VM.
    var to: String? { destination.disksDir ?? registeredHome(vm, target: target) }
    @Option(help: "Block size for the checksum comparison, in bytes.") var blockSize = 1 << 20
    @Option(help: "How often the failover mount ships its reverse logs (30s, 5m, ...).") var copyFrequency = "30s"
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        guard blockSize >= 4096, blockSize <= 64 << 20, blockSize % 4096 == 0 else {
            throw ReplicaError("bad --block-size \(blockSize): a multiple of 4096 from 4 KiB to 64 MiB", code: .badRequest)
        }
        _ = try ReplicationPolicy.seconds(copyFrequency, what: "--copy-frequency")
    }

    func run() throws {
        let store = try openTargetStore(target, options: stored.storeOptions)
        let interval = max(1, try ReplicationPolicy.seconds(copyFrequency, what: "--copy-frequency"))
        let failover = coordinator(store, quiet: json, options: stored.storeOptions)
        failover.siteOptions = stored.storeOptions
        let (report, shipped, destination) = try failover.reprotect(vm: vm, to: to, blockSize: blockSize,
                                                                                        copyInterval: interval)
        if json { return try printJSON(report) }
        print("reprotected VM \(vm) towards \(destination): compared \(report.compared) bytes, sent \(report.sent) (\(shipped) from the change logs) in \(String(format: "%.1f", report.seconds)) s; changes now ship every \(copyFrequency)")
        print("next: `replicafs failback \(vm) --target \(store.location) --mode minimize-downtime`")
    }
}
