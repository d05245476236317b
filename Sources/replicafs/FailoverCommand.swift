import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// `replicafs failover`: bring a VM up from its target store at a recovery point, as writable
/// disks in a FUSE mount, without copying them; then `cleanup` (discard) or `commit` (final).
struct FailoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Mount a VM's disks at a recovery point as writable files (test, planned or unplanned failover).",
        discussion: FailoverStartCommand.optionsHelp,
        subcommands: [FailoverStartCommand.self, FailoverCleanupCommand.self, FailoverCommitCommand.self, FailoverRemountCommand.self,
                      FailoverServeCommand.self],
        defaultSubcommand: FailoverStartCommand.self)
}

struct FailoverStartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Fail a VM over: `replicafs failover <vm> --target S --point P --mount M [--test | --planned]`.",
        discussion: """
            --test: a drill; replication into the store goes on, the drill's writes stay in the drill.
            --planned: stops the source mount's writes (unmounts it), ships everything logged, and fails over to that final point.
            Neither: unplanned, for when the primary is gone; the store alone suffices.
            """)

    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @Option(help: "A point id, latest, latest-app, or an ISO 8601 time (the last point at or before it).") var point = "latest"
    @Option(help: "Empty directory to mount the VM's disks on (a --planned failover run at the primary against another host's receiver leaves it out: it only stops the source and ships its last changes).")
    var mount: String?
    @Flag(help: "A test failover (DR drill).") var test = false
    @Flag(help: "A planned failover: stop the source, ship its last changes, no data loss.") var planned = false
    @Option(help: "The primary's disks directory (planned failover with no running source mount; where failback returns).")
    var disksDir: String?
    @Option(help: "An empty directory on this host for the failover's own files: the disks' copy-on-write layers, reverse logs (default: the VM's failover directory in a local store).")
    var workDir: String?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        guard !(test && planned) else { throw ReplicaError("--test and --planned exclude each other", code: .badRequest) }
        guard mount != nil || planned else { throw ReplicaError("give --mount <empty directory>", code: .badRequest) }
        if mount == nil, workDir != nil { throw ReplicaError("--work-dir goes with --mount", code: .badRequest) }
    }

    func run() throws {
        let store = try storeHolding(vm, target: target, options: stored.storeOptions)
        let kind: FailoverState.Kind = test ? .test : planned ? .planned : .unplanned
        guard let mount else { return try stopAndShip(store) }
        let started = try coordinator(store, options: stored.storeOptions).failover(vm: vm, point: point, kind: kind, mountpoint: mount, disksDir: disksDir,
                                                      workDirectory: workDir)
        let state = started.state, mp = state.mountpoint, source = state.sourceDisksDir
        let seconds = started.mount.seconds
        let p = state.point
        let when = ISOTime.format(nanos: p.timeNanos)
        if json {
            struct Out: Encodable {
                var vm: String, kind: String, point: Int, consistency: String, time: String
                var mountpoint: String, mountSeconds: Double, pid: Int32, disks: [String]
            }
            return try printJSON(Out(vm: vm, kind: kind.rawValue, point: p.id, consistency: p.consistency.rawValue, time: when,
                                     mountpoint: mp, mountSeconds: seconds, pid: started.mount.pid, disks: state.disks))
        }
        print("\(kind.rawValue) failover of VM \(vm): point \(p.id) (\(p.consistency.rawValue)-consistent, \(when)) mounted on \(mp) in \(String(format: "%.3f", seconds)) s (daemon pid \(started.mount.pid))")
        switch kind {
        case .test: print("next: `replicafs failover cleanup \(vm) --target \(store.location)` discards the drill")
        case .unplanned: print("next: `replicafs failover commit \(vm) --target \(store.location)` makes point \(p.id) final, or `failover cleanup` to pick another")
        case .planned: print("next: `replicafs reprotect \(vm) --target \(store.location)` replicates back to \(source ?? "the primary")")
        }
    }
}

extension FailoverStartCommand {
    /// `--planned` without `--mount`, at the primary: stop the source, ship its last changes
    /// (over the network to a receiver), and say what to run on the secondary.
    func stopAndShip(_ store: any TargetStore) throws {
        guard point == "latest" else {
            throw ReplicaError("a planned failover goes to the final point it ships: leave --point out", code: .badRequest)
        }
        let (source, p) = try coordinator(store, quiet: json, options: stored.storeOptions).stopAndShip(vm: vm, disksDir: disksDir)
        if json {
            struct Out: Encodable { var vm: String, kind: String, source: String, point: Int, time: String, target: String }
            return try printJSON(Out(vm: vm, kind: "planned", source: source, point: p.id, time: ISOTime.format(nanos: p.timeNanos), target: store.location))
        }
        print("planned failover of VM \(vm): the source at \(source) is stopped and its last changes are point \(p.id) in \(store.location)")
        print("next, on the secondary: `replicafs failover \(vm) --target <its store directory> --point \(p.id) --mount <dir>`")
    }
}

/// Opens the target store and checks it holds `vm`.
func storeHolding(_ vm: String, target: String, options: TargetOptions = TargetOptions()) throws -> any TargetStore {
    let store = try openTargetStore(target, options: options)
    try store.requireVM(vm)
    return store
}

struct FailoverCleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup", abstract: "End a test (or uncommitted) failover: unmount it and discard its writes, leaving no trace.")
    @OptionGroup var stored: StoredVMOptions
    @OptionGroup var output: OutputOptions
    var vm: String { stored.vm }
    var target: String { stored.target }

    func run() throws {
        let state = try coordinator(try openTargetStore(target, options: stored.storeOptions)).cleanup(vm: vm)
        if output.json { return try printJSON(FailoverResult(state, action: "cleanup")) }
        print("cleaned up the \(state.kind.rawValue) failover of VM \(vm) (point \(state.point.id)): its writes are discarded")
    }
}

struct FailoverCommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit", abstract: "Make a failover's recovery point final (older points are discarded).")
    @OptionGroup var stored: StoredVMOptions
    @OptionGroup var output: OutputOptions
    var vm: String { stored.vm }
    var target: String { stored.target }

    func run() throws {
        let state = try coordinator(try openTargetStore(target, options: stored.storeOptions)).commit(vm: vm)
        if output.json { return try printJSON(FailoverResult(state, action: "commit")) }
        print("committed the \(state.kind.rawValue) failover of VM \(vm) at point \(state.point.id)")
    }
}

struct FailoverRemountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remount",
        abstract: "Mount a failover again after its daemon died (or the machine restarted): every fsynced write is there.",
        discussion: "--all remounts every failover the store records whose mount is not running (what replicafs-failover-remount@.service runs at boot).")
    @Argument(help: "VM name (or --all).") var vm: String?
    @Option(help: "Target store (default: the one this host registered for the VM; with --all, every store of a failover started here).")
    var target: String?
    @Flag(help: "Every failover recorded in the store whose mount is not running.") var all = false
    @Option(help: "PKI directory for a replicafs:// target (default: the one the failover was started with, else the VM's saved one, else /etc/replicafs/pki).")
    var pki: String?
    @OptionGroup var objectStore: ObjectStoreAccessOptions

    func validate() throws {
        if all && vm != nil { throw ReplicaError("give a VM name or --all, not both", code: .badRequest) }
        if !all && vm == nil { throw ReplicaError("give a VM name, or --all", code: .badRequest) }
        if let vm, !ProtectedVM.validName(vm) {
            throw ReplicaError("bad VM name '\(vm)': use letters, digits, '.', '_' and '-'", code: .badRequest)
        }
        guard target?.isEmpty != true else { throw ReplicaError("--target is empty", code: .badRequest) }
    }

    func run() throws {
        guard let target else {
            guard let vm else {
                // --all without a store: every store holding a failover started on this host.
                let targets = Set(VMRegistry().all().filter { $0.failover != nil }.map(\.target)).sorted()
                if targets.isEmpty { return print("no failovers started on this host") }
                for t in targets {
                    let options = try storeOptions(t)
                    try remountAll(try openTargetStore(t, options: options), options: options)
                }
                return
            }
            let entry = try VMRegistry().require(vm, for: "failover remount")
            let options = try storeOptions(entry.target, vm: vm)
            return try remount(vm, in: try openTargetStore(entry.target, options: options), options: options)
        }
        let options = try storeOptions(target, vm: vm)
        let store = try openTargetStore(target, options: options)
        guard let vm else { return try remountAll(store, options: options) }
        try remount(vm, in: store, options: options)
    }

    /// How to open `target`, as the other failover commands do: `--pki` and the access flags
    /// given, over the options a failover of it started here recorded (`vm`'s, else any), else
    /// the ones a VM protected here saved for it.
    func storeOptions(_ target: String, vm: String? = nil) throws -> TargetOptions {
        let entries = VMRegistry().all().filter { $0.target == target }
        var options = TargetOptions()
        let failovers = entries.filter { $0.vm == vm } + entries.filter { $0.vm != vm }
        if let recorded = failovers.lazy.compactMap({ $0.failover?.options }).first {
            options = recorded
        } else if let saved = entries.lazy.compactMap({ entry in
            entry.disksDir.flatMap { dir in ProtectedVM.all(disksDir: dir).first { $0.name == entry.vm }?.targetOptions }
        }).first {
            options = saved
        }
        if let pki { options.pki = pki }
        try objectStore.apply(to: &options)
        return options
    }

    private func remount(_ vm: String, in store: any TargetStore, options: TargetOptions) throws {
        let started = try coordinator(store, options: options).remount(vm: vm)
        let state = started.state, launched = started.mount
        print("remounted the \(state.kind.rawValue) failover of VM \(vm) (point \(state.point.id)) on \(state.mountpoint) (daemon pid \(launched.pid))")
    }

    /// Remounts each recorded failover whose daemon is not running; one failing does not stop
    /// the others, and the command fails if any did.
    private func remountAll(_ store: any TargetStore, options: TargetOptions) throws {
        let vms = store.failedOverVMs()
        if vms.isEmpty { return print("no failovers recorded in \(store.location)") }
        let registry = MountRegistry()
        var failed: [String] = []
        for vm in vms {
            guard let state = store.failoverState(vm) else { continue }
            if let entry = registry.lookup(state.mountpoint), MountRegistry.isAlive(entry.pid) {
                print("the failover of VM \(vm) is already mounted on \(state.mountpoint) (daemon pid \(entry.pid))")
                continue
            }
            do {
                let started = try coordinator(store, options: options).remount(vm: vm)
                print("remounted the \(state.kind.rawValue) failover of VM \(vm) (point \(state.point.id)) on \(state.mountpoint) (daemon pid \(started.mount.pid))")
            } catch {
                FileHandle.standardError.write(Data("replicafs: cannot remount the failover of VM \(vm): \(describe(error))\n".utf8))
                failed.append(vm)
            }
        }
        guard failed.isEmpty else {
            throw ReplicaError("\(failed.count) of \(vms.count) failovers not remounted: \(failed.joined(separator: ", "))")
        }
    }
}

/// The failover mount's daemon (started by `failover`; not for direct use).
struct FailoverServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", shouldDisplay: false)
    @Argument var vm: String
    @Option var target: String
    @Option var pki: String?
    @OptionGroup var objectStore: ObjectStoreAccessOptions
    @Option var readyFd: Int32 = -1

    func run() throws {
        var options = MountOptions()
        options.allowOther = geteuid() == 0
        var storeOptions = TargetOptions(pki: pki)
        try objectStore.apply(to: &storeOptions)
        let daemon = FailoverDaemon(store: try openTargetStore(target, options: storeOptions), vm: vm, options: options)
        try daemon.run { result in
            switch result {
            case .success(let seconds): DaemonLauncher.answer(readyFd, "READY \(seconds)")
            case .failure(let error): DaemonLauncher.answer(readyFd, "ERROR \(describe(error))")
            }
        }
    }
}

/// `failover cleanup|commit --json`: what was cleaned up or committed.
struct FailoverResult: Encodable {
    var vm: String
    /// cleanup or commit.
    var action: String
    /// test, planned or unplanned.
    var kind: String
    var point: Int
    var time: String
    var mountpoint: String

    init(_ state: FailoverState, action: String) {
        vm = state.vm
        self.action = action
        kind = state.kind.rawValue
        point = state.point.id
        time = ISOTime.format(nanos: state.point.timeNanos)
        mountpoint = state.mountpoint
    }
}
