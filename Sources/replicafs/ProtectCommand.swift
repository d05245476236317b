import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaMount
import ReplicaSource
import ReplicaStore
import ReplicaSystem
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
    @Option(name: .customLong("network"), help: "A source network the VM is attached to (repeat); recovery plans map it at failover.") var networks: [String] = []
    @Option(help: "Lag past which the VM's health is Warning (default: twice the copy frequency, at least 1m).") var rpo: String?
    @Option(help: "Resync a disk whose pending log bytes exceed this percent of its size.") var resyncThreshold: Double = 50
    @Option(help: "When automatic resyncs run: HH:MM-HH:MM (local time) or always.") var resyncWindow = ResyncScheduler.defaultWindow
    @Flag(help: "Wait until the running mount of --disks-dir has copied the disks to the target, showing the progress.") var wait = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard ProtectedVM.validName(vm) else { throw ReplicaError("bad VM name '\(vm)': use letters, digits, - _ .") }
        guard FileSystem.isDirectory(disksDir) else { throw ReplicaError("disks directory \(disksDir) does not exist") }
        let dir = try FileSystem.realPath(disksDir)
        try StateDirectory.check(disksDir: dir)
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
        let store = try openTargetStore(target)
        if store.hasVM(vm) { throw ReplicaError("target store \(store.location) already holds a replica of VM \(vm)") }
        var policy = ReplicationPolicy()
        policy.copyFrequency = try ReplicationPolicy.seconds(copyFrequency, what: "--copy-frequency")
        policy.retention = try ReplicationPolicy.seconds(retention, what: "--retention")
        if let every = appConsistentEvery { policy.appConsistentEvery = try ReplicationPolicy.seconds(every, what: "--app-consistent-every") }
        policy.quiesce = quiesce
        policy.thaw = thaw
        policy.compress = compress
        policy.initialAt = try ReplicationPolicy.startTime(initial)
        guard resyncThreshold > 0 && resyncThreshold <= 1000 else { throw ReplicaError("bad --resync-threshold \(resyncThreshold): use a percent of the disk size, above 0") }
        _ = try ResyncScheduler.Window(resyncWindow)
        policy.resyncThreshold = resyncThreshold
        policy.resyncWindow = resyncWindow
        if let rpo {
            policy.rpo = try ReplicationPolicy.seconds(rpo, what: "--rpo")
            guard policy.rpo! > 0 else { throw ReplicaError("bad --rpo '\(rpo)': it must be longer than zero") }
        }
        for network in networks where network.isEmpty || network.contains(where: { $0.isNewline || $0 == "/" }) {
            throw ReplicaError("bad network name '\(network)'")
        }
        guard Set(networks).count == networks.count else { throw ReplicaError("a network is named twice") }
        try policy.validate()
        let protected = ProtectedVM(name: vm, disks: disks, target: store.location, policy: policy, networks: networks.isEmpty ? nil : networks)
        // The store learns the VM's disks and networks now, so a plan can map them without the primary.
        try store.saveMetadata(VMMetadata(protected))
        // --wait needs the mount that will copy: refused before anything is saved.
        let mount = try wait ? runningMount(of: dir) : nil
        try protected.save(disksDir: dir)
        if let mount { try DaemonProgress.waitForInitialCopy(mount, vm: vm) }
        if output.json {
            // Durations in seconds, the start time in the one time form (docs/json.md).
            struct Result: Encodable {
                var vm: String, disksDir: String, disks: [String], target: String
                var copyFrequencySeconds: Double, retentionSeconds: Double, appConsistentEverySeconds: Double?, rpoSeconds: Double
                var compress: Bool, initialAt: String?, resyncWindow: String?
            }
            return try printJSON(Result(vm: vm, disksDir: dir, disks: disks, target: store.location, copyFrequencySeconds: policy.copyFrequency,
                                        retentionSeconds: policy.retention, appConsistentEverySeconds: policy.appConsistentEvery,
                                        rpoSeconds: policy.effectiveRPO, compress: policy.compress,
                                        initialAt: policy.initialAt.map { ISOTime.format(Date(timeIntervalSince1970: $0)) },
                                        resyncWindow: policy.resyncWindow))
        }
        print("protected \(vm): \(disks.joined(separator: ", ")) -> \(store.location)")
    }
}


/// The running protected mount of a disks directory (for `protect --wait`).
func runningMount(of disksDir: String) throws -> MountRegistry.Entry {
    guard let entry = MountRegistry().all().first(where: { $0.disksDir == disksDir && MountRegistry.isAlive($0.pid) }) else {
        throw ReplicaError("--wait: no running mount serves \(disksDir): mount it first (`replicafs mount \(disksDir) <mountpoint>`), the initial copy starts then")
    }
    return entry
}
