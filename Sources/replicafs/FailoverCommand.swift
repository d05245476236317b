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

    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String
    @Option(help: "A point id, latest, latest-app, or an ISO 8601 time (the last point at or before it).") var point = "latest"
    @Option(help: "Empty directory to mount the VM's disks on.") var mount: String
    @Flag(help: "A test failover (DR drill).") var test = false
    @Flag(help: "A planned failover: stop the source, ship its last changes, no data loss.") var planned = false
    @Option(help: "The primary's disks directory (planned failover with no running source mount; where failback returns).")
    var disksDir: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        guard !(test && planned) else { throw ReplicaError("--test and --planned exclude each other") }
        let store = try storeHolding(vm, target: target)
        if let existing = store.failoverState(vm) {
            throw ReplicaError("VM \(vm) is already failed over (\(existing.summary)): clean it up or fail back first")
        }
        var selector = try pointSelector(point, store: store, vm: vm)
        let registry = MountRegistry()
        try MountDaemon.checkFuseDevice()
        let mp = try MountDaemon.checkMountpoint(mount, registry: registry)
        var source = try disksDir.map { try FileSystem.realPath($0) }
        let kind: FailoverState.Kind = test ? .test : planned ? .planned : .unplanned
        if planned {
            guard point == "latest" else { throw ReplicaError("a planned failover goes to the final point it ships: leave --point out") }
            source = try stopSource(source)
            do {
                let final = try store.shipFinalLogs(vm: vm, disksDir: source!)
                selector = .id(final.id)
            } catch {
                throw ReplicaError("planned failover: the source at \(source!) is stopped but its last changes could not be shipped: \(error); mount it again to resume protection")
            }
        }
        let state = try store.beginFailover(vm: vm, point: selector, kind: kind, mountpoint: mp, sourceDisksDir: source)
        let launched: DaemonLauncher.Launched
        do {
            launched = try launchFailoverDaemon(vm, store: store, mountpoint: mp)
        } catch {
            try? store.discardFailover(vm: vm)
            throw error
        }
        let seconds = Double(launched.detail) ?? 0
        let p = state.point
        let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(p.timeNanos) / 1e9))
        if json {
            struct Out: Encodable {
                var vm: String, kind: String, point: Int, consistency: String, time: String
                var mountpoint: String, mountSeconds: Double, pid: Int32, disks: [String]
            }
            return try printJSON(Out(vm: vm, kind: kind.rawValue, point: p.id, consistency: p.consistency.rawValue, time: when,
                                     mountpoint: mp, mountSeconds: seconds, pid: launched.pid, disks: state.disks))
        }
        print("\(kind.rawValue) failover of VM \(vm): point \(p.id) (\(p.consistency.rawValue)-consistent, \(when)) mounted on \(mp) in \(String(format: "%.3f", seconds)) s (daemon pid \(launched.pid))")
        switch kind {
        case .test: print("next: `replicafs failover cleanup \(vm) --target \(store.root)` discards the drill")
        case .unplanned: print("next: `replicafs failover commit \(vm) --target \(store.root)` makes point \(p.id) final, or `failover cleanup` to pick another")
        case .planned: print("next: `replicafs reprotect \(vm) --target \(store.root)` replicates back to \(source ?? "the primary")")
        }
    }

    /// Stops the source's writes: asks its mount to ship what it logged, then unmounts it.
    /// Returns the source's disks directory.
    private func stopSource(_ given: String?) throws -> String {
        let running = MountRegistry().all().first { entry in
            MountRegistry.isAlive(entry.pid) && ProtectedVM.all(disksDir: entry.disksDir).contains { $0.name == vm }
        }
        guard let running else {
            guard let given else {
                throw ReplicaError("--planned: no running mount protects VM \(vm); give --disks-dir with the source's disks directory")
            }
            return given
        }
        // Ship what is logged while the source still runs: the final delta stays small.
        let response = try ControlClient.call(socket: running.socket, pid: running.pid, ControlRequest(op: .snapshot, vm: vm))
        guard response.ok else { throw ReplicaError("planned failover: the source could not ship its changes: \(response.error ?? "?")") }
        do {
            try stopMount(running.mountpoint)
        } catch {
            throw ReplicaError("planned failover: cannot stop the source mount \(running.mountpoint): \(error); shut the VM down first")
        }
        return running.disksDir
    }
}

/// Opens the target store and checks it holds `vm`.
func storeHolding(_ vm: String, target: String) throws -> TargetStore {
    let store = try TargetStore(root: target)
    guard store.hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(store.root)") }
    return store
}

/// Parses `--point`: an id, latest, latest-app, or a time (the last point at or before it).
func pointSelector(_ text: String, store: TargetStore, vm: String) throws -> TargetStore.PointSelector {
    if let date = ISOTime.parse(text) {
        let nanos = try TimeLimits.nanos(ofTime: date.timeIntervalSince1970, text: text)
        guard let p = try store.points(vm).last(where: { $0.timeNanos <= nanos }) else {
            throw ReplicaError("VM \(vm) has no recovery point at or before \(text)")
        }
        return .id(p.id)
    }
    if text.contains("-") && text.contains(":") {
        throw ReplicaError("bad point time '\(text)': not a valid ISO-8601 time (use one such as 2026-11-23T18:30:00Z)")
    }
    return try TargetStore.PointSelector(text)
}

struct FailoverCleanupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanup", abstract: "End a test (or uncommitted) failover: unmount it and discard its writes, leaving no trace.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String

    func run() throws {
        let store = try storeHolding(vm, target: target)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to clean up") }
        guard !state.committed else { throw ReplicaError("the failover of VM \(vm) is committed: fail back instead of cleaning up") }
        if let to = state.reverseTo {
            // The original disks already hold failed-over writes the store never saw.
            throw ReplicaError("VM \(vm) was reprotected towards \(to): fail back instead of cleaning up")
        }
        if MountTable.mount(at: state.mountpoint) != nil { try stopMount(state.mountpoint) }
        try store.discardFailover(vm: vm)
        print("cleaned up the \(state.kind.rawValue) failover of VM \(vm) (point \(state.point.id)): its writes are discarded")
    }
}

struct FailoverCommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit", abstract: "Make a failover's recovery point final (older points are discarded).")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String

    func run() throws {
        let store = try storeHolding(vm, target: target)
        let state = try store.commitFailover(vm: vm)
        print("committed the \(state.kind.rawValue) failover of VM \(vm) at point \(state.point.id)")
    }
}

struct FailoverRemountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remount",
        abstract: "Mount a failover again after its daemon died (or the machine restarted): every fsynced write is there.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store directory.") var target: String

    func run() throws {
        let store = try storeHolding(vm, target: target)
        guard let state = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover to remount") }
        let registry = MountRegistry()
        _ = try MountDaemon.checkMountpoint(state.mountpoint, registry: registry)
        let launched = try launchFailoverDaemon(vm, store: store, mountpoint: state.mountpoint)
        print("remounted the \(state.kind.rawValue) failover of VM \(vm) (point \(state.point.id)) on \(state.mountpoint) (daemon pid \(launched.pid))")
    }
}

/// Starts the failover mount's daemon and waits until it serves.
func launchFailoverDaemon(_ vm: String, store: TargetStore, mountpoint: String) throws -> DaemonLauncher.Launched {
    let registry = MountRegistry()
    return try DaemonLauncher.launch(["failover", "serve", vm, "--target", store.root],
                                     logPath: registry.paths(for: mountpoint).log, runDirectory: registry.runDirectory)
}

/// The failover mount's daemon (started by `failover`; not for direct use).
struct FailoverServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", shouldDisplay: false)
    @Argument var vm: String
    @Option var target: String
    @Option var readyFd: Int32 = -1

    func run() throws {
        var options = MountOptions()
        options.allowOther = geteuid() == 0
        let daemon = FailoverDaemon(store: try TargetStore(root: target), vm: vm, options: options)
        try daemon.run { result in
            switch result {
            case .success(let seconds): DaemonLauncher.answer(readyFd, "READY \(seconds)")
            case .failure(let error): DaemonLauncher.answer(readyFd, "ERROR \(describe(error))")
            }
        }
    }
}
