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
    @Option(help: "Directory holding the VM's images (with --update: default the registered one).") var disksDir: String?
    @Option(name: .customLong("disk"), help: "An image of the VM (repeat for each disk).") var disks: [String] = []
    @Option(help: "Target store: a directory, a receiver on another host (replicafs://HOST[:PORT], see `serve`) or an object store (s3://BUCKET/PREFIX).") var target: String?
    @Option(help: "PKI directory for a replicafs:// target (default /etc/replicafs/pki).") var pki: String?
    @OptionGroup var objectStore: ObjectStoreAccessOptions
    @Option(help: "A named policy (`replicafs policy create`): its settings, overridden by the options given.") var policy: String?
    @OptionGroup var settings: PolicyOptions
    @Flag(help: "Change the policy of a protected VM (the given settings, or --policy); its replica and points stay.") var update = false
    @Option(help: "When the initial replication starts: now, HH:MM (next, local time) or an ISO-8601 time.") var initial = "now"
    @Option(name: .customLong("network"), help: "A source network the VM is attached to (repeat); recovery plans map it at failover.") var networks: [String] = []
    @Option(help: "Lag past which the VM's health is Warning (default: twice the copy frequency, at least 1m).") var rpo: String?
    @Option(help: "Resync a disk whose pending log bytes exceed this percent of its size (default 50).") var resyncThreshold: Double?
    @Option(help: "When automatic resyncs run: HH:MM-HH:MM (local time) or always (default \(ResyncScheduler.defaultWindow)).") var resyncWindow: String?
    @Flag(help: "Wait until the running mount of --disks-dir has copied the disks to the target, showing the progress.") var wait = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard ProtectedVM.validName(vm) else { throw ReplicaError("bad VM name '\(vm)': use letters, digits, - _ .") }
        if update { return try updatePolicy() }
        let named = try policy.map { try PolicyLibrary().require($0) }
        guard let disksDir else { throw ReplicaError("give --disks-dir, the directory holding the VM's images") }
        guard let target else { throw ReplicaError("give --target, the store the VM replicates to") }
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
        var given = TargetOptions(pki: pki)
        try objectStore.apply(to: &given)
        if given.encryptKeyFile != nil && TargetStoreOpeners.scheme(of: target) != "s3" {
            throw ReplicaError("--encrypt-key-file applies to an s3:// target, not \(target)", code: .badRequest)
        }
        let targetOptions = given == TargetOptions() ? nil : given
        let store = try openTargetStore(target, options: targetOptions ?? TargetOptions())
        if store.hasVM(vm) { throw ReplicaError("target store \(store.location) already holds a replica of VM \(vm)") }
        var policy = try settings.applied(to: named?.apply(to: ReplicationPolicy()) ?? ReplicationPolicy())
        policy.initialAt = try ReplicationPolicy.startTime(initial)
        policy.resyncThreshold = 50
        policy.resyncWindow = ResyncScheduler.defaultWindow
        try applyMonitoring(to: &policy)
        for network in networks where network.isEmpty || network.contains(where: { $0.isNewline || $0 == "/" }) {
            throw ReplicaError("bad network name '\(network)'")
        }
        guard Set(networks).count == networks.count else { throw ReplicaError("a network is named twice") }
        try policy.validateRules()
        let protected = ProtectedVM(name: vm, disks: disks, target: store.location, policy: policy, networks: networks.isEmpty ? nil : networks,
                                    targetOptions: targetOptions)
        // The store learns the VM's disks and networks now, so a plan can map them without the primary.
        try store.saveMetadata(VMMetadata(protected))
        // --wait needs the mount that will copy: refused before anything is saved.
        let mount = try wait ? runningMount(of: dir) : nil
        try protected.save(disksDir: dir)
        // From now on commands find the VM by its name.
        try VMRegistry().update(vm, disksDir: dir, target: store.location) { $0.policy = named?.name; $0.failover = nil }
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

extension ProtectCommand {
    /// --rpo, --resync-threshold and --resync-window, when given.
    func applyMonitoring(to policy: inout ReplicationPolicy) throws {
        if let resyncThreshold {
            guard resyncThreshold > 0 && resyncThreshold <= 1000 else { throw ReplicaError("bad --resync-threshold \(resyncThreshold): use a percent of the disk size, above 0") }
            policy.resyncThreshold = resyncThreshold
        }
        if let resyncWindow {
            _ = try ResyncScheduler.Window(resyncWindow)
            policy.resyncWindow = resyncWindow
        }
        if let rpo {
            policy.rpo = try ReplicationPolicy.seconds(rpo, what: "--rpo")
            guard policy.rpo! > 0 else { throw ReplicaError("bad --rpo '\(rpo)': it must be longer than zero") }
        }
    }

    /// `protect <vm> --update`: the VM's policy changes (a named policy, then the given
    /// settings); its disks, target, replica and points stay. Everything is checked before the
    /// VM's file is replaced (atomically), so a refused value changes nothing. A running mount
    /// daemon reads the file again at its next pass (every 100 ms).
    func updatePolicy() throws {
        guard disks.isEmpty, networks.isEmpty, target == nil, initial == "now" else {
            throw ReplicaError("--update changes the policy only (settings, --policy, --rpo, --resync-*): --disk, --network, --target and --initial stay as protected; unprotect and protect again to change them")
        }
        let named = try policy.map { try PolicyLibrary().require($0) }
        guard named != nil || !settings.isEmpty || rpo != nil || resyncThreshold != nil || resyncWindow != nil else {
            throw ReplicaError("--update: give --policy NAME or a setting to change (--copy-frequency, --retention, ...)")
        }
        let updated = try PolicyUpdate.apply(vm, disksDir: disksDir, command: "protect --update") { old in
            var p = try settings.applied(to: named?.apply(to: old) ?? old)
            try applyMonitoring(to: &p)
            return p
        }
        let registry = VMRegistry()
        let keptName = registry.lookup(vm)?.policy.flatMap { PolicyLibrary().lookup($0) }
        try registry.update(vm, disksDir: updated.disksDir, target: updated.vm.target) { entry in
            // The VM follows a named policy as long as its settings are the policy's.
            let candidate = named ?? keptName
            entry.policy = candidate.flatMap { $0.apply(to: updated.vm.policy) == updated.vm.policy ? $0.name : nil }
        }
        print(updated.changes.isEmpty ? "VM \(vm): policy unchanged" : "updated VM \(vm): \(updated.changes)")
    }
}

/// The running protected mount of a disks directory (for `protect --wait`).
func runningMount(of disksDir: String) throws -> MountRegistry.Entry {
    guard let entry = MountRegistry().all().first(where: { $0.disksDir == disksDir && MountRegistry.isAlive($0.pid) }) else {
        throw ReplicaError("--wait: no running mount serves \(disksDir): mount it first (`replicafs mount \(disksDir) <mountpoint>`), the initial copy starts then")
    }
    return entry
}
