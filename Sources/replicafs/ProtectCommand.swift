import ArgumentParser
import Foundation
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
    @Option(help: "Target store: a directory, or a receiver on another host (replicafs://HOST[:PORT], see `serve`).") var target: String
    @Option(help: "PKI directory for a replicafs:// target (default /etc/replicafs/pki).") var pki: String?
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
        if TargetStoreOpeners.scheme(of: target) == nil {
            guard FileSystem.isDirectory(target) else { throw ReplicaError("target store \(target) does not exist") }
            guard access(target, W_OK) == 0 else { throw ReplicaError("target store \(target) is not writable") }
        }
        let existing = ProtectedVM.all(disksDir: dir)
        if existing.contains(where: { $0.name == vm }) { throw ReplicaError("VM \(vm) is already protected") }
        for other in existing {
            if let shared = other.disks.first(where: disks.contains) {
                throw ReplicaError("disk \(shared) is already protected by VM \(other.name)")
            }
        }
        let targetOptions = pki.map { TargetOptions(pki: $0) }
        let store = try openTargetStore(target, options: targetOptions ?? TargetOptions())
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
        let protected = ProtectedVM(name: vm, disks: disks, target: store.location, policy: policy, networks: networks.isEmpty ? nil : networks,
                                    targetOptions: targetOptions)
        // The store learns the VM's disks and networks now, so a plan can map them without the primary.
        try store.saveMetadata(VMMetadata(protected))
        try protected.save(disksDir: dir)
        print("protected \(vm): \(disks.joined(separator: ", ")) -> \(store.location)")
    }
}

