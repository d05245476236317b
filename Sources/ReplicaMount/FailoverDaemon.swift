import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Everything the failover mount's daemon process does: open the VM's disks at the failover's
/// recovery point (no copy), mount them, answer its control socket (status, freeze), serve
/// until unmounted (or SIGTERM), then make every write durable.
public struct FailoverDaemon {
    public let store: any TargetStore
    public let vm: String
    public let options: MountOptions
    public let registry: MountRegistry

    public init(store: any TargetStore, vm: String, options: MountOptions, registry: MountRegistry = MountRegistry()) {
        self.store = store
        self.vm = vm
        self.options = options
        self.registry = registry
    }

    /// Mounts and serves until unmounted. `ready` is called once the mount is live, with the
    /// seconds opening and mounting took, or with the error that prevented it.
    public func run(ready: (Result<Double, Error>) -> Void) throws {
        let signals = StopSignalWatcher()
        signal(SIGPIPE, SIG_IGN) // a launcher gone before the ready line must not kill a live mount's daemon
        let started = Clock.nowNanos()
        let server: FailoverServer
        let control: ControlServer
        let shipper: ReverseShipper
        let state: FailoverState
        do {
            try MountDaemon.checkFuseDevice()
            guard let s = store.failoverState(vm) else { throw ReplicaError("VM \(vm) has no failover in \(store.location)") }
            state = s
            let mp = try MountDaemon.checkMountpoint(state.mountpoint, registry: registry)
            let dir = state.workDirectory
            try FileSystem.mkdirs(dir)
            let disks = try state.disks.map {
                try FailoverDisk(store: store, vm: vm, disk: $0, point: state.point, directory: dir)
            }
            server = try FailoverServer(disks: disks, directory: dir, mountpoint: mp, options: options)
            shipper = ReverseShipper(disks: disks, logDirectory: state.reverseLogDirectory)
            if state.reverseReady {
                // Changes made before this restart may be missing from the reverse logs: the next
                // reprotect compares the disks again (a failback compares them meanwhile).
                shipper.discard()
                var s = state
                s.reverseReady = false
                try store.saveFailover(s)
            }
            let paths = registry.paths(for: mp)
            try FileSystem.mkdirs(registry.runDirectory, mode: 0o700)
            let storeRoot = store.location
            control = try ControlServer(path: paths.socket) { [server, shipper, store, vm] request in
                switch request.op {
                case .reprotect:
                    try shipper.start()
                    return ControlResponse(ok: true)
                case .ship:
                    guard let now = store.failoverState(vm), let to = now.reverseTo else { throw ReplicaError("VM \(vm) is not reprotected") }
                    var response = ControlResponse(ok: true)
                    response.shippedBytes = try shipper.ship(to: to, options: TargetOptions(pki: now.reversePKI))
                    return response
                case .ping:
                    return ControlResponse(ok: true)
                case .freeze:
                    // No periodic shipment may run under the failback's final copy.
                    shipper.pause()
                    try server.freeze()
                    return ControlResponse(ok: true, failover: Self.status(server, state, storeRoot, shipper: shipper, store: store))
                case .unfreeze:
                    server.unfreeze()
                    shipper.resume()
                    return ControlResponse(ok: true, failover: Self.status(server, state, storeRoot, shipper: shipper, store: store))
                case .status:
                    return ControlResponse(ok: true, failover: Self.status(server, state, storeRoot, shipper: shipper, store: store))
                default:
                    throw ReplicaError("\(request.op.rawValue) is not something a failover mount does")
                }
            }
            try server.mount(label: vm)
            do {
                try registry.record(.init(pid: getpid(), mountpoint: mp, disksDir: dir, socket: paths.socket))
            } catch {
                _ = server.requestUnmount() // no mount is left behind that nothing serves
                throw error
            }
        } catch {
            ready(.failure(error))
            throw error
        }
        control.start()
        let reverse = startReverseReplication(shipper)
        signals.start { server.requestUnmount() }
        ready(.success(Double(Clock.nowNanos() - started) / 1e9))
        defer {
            reverse.stop()
            signals.stop()
            control.stop()
            registry.remove(server.mountpoint)
        }
        try server.run()
    }

    /// Once reprotect has synced the original site, ships the reverse logs at its interval,
    /// until the returned flag is set.
    private func startReverseReplication(_ shipper: ReverseShipper) -> StopFlag {
        let store = self.store, vm = self.vm
        let stop = StopFlag()
        let thread = Thread {
            while !stop.isStopped {
                usleep(200_000)
                guard let state = store.failoverState(vm) else { return }
                // At the copy frequency; after a failure, when the forward retry schedule says.
                guard state.reverseReady, !shipper.isPaused, let to = state.reverseTo,
                      shipper.due(interval: state.reverseInterval) else { continue }
                do {
                    try shipper.ship(to: to, options: TargetOptions(pki: state.reversePKI))
                } catch {
                    let next = shipper.status(destination: to, interval: state.reverseInterval, ready: true).nextRetryInSeconds ?? 0
                    DaemonLog.logger.error("reverse replication of \(vm) to \(to): \(error); retry in \(String(format: "%.1f", next)) s")
                }
            }
        }
        thread.name = "replicafs-reverse"
        thread.start()
        return stop
    }

    static func status(_ server: FailoverServer, _ state: FailoverState, _ store: String, shipper: ReverseShipper? = nil,
                       store current: (any TargetStore)? = nil) -> FailoverStatus {
        var status = FailoverStatus(pid: getpid(), vm: state.vm, store: store, kind: state.kind.rawValue, point: state.point.id,
                                    mountpoint: server.mountpoint, frozen: server.disks.contains { $0.frozen },
                                    disks: server.disks.map { .init(name: $0.name, size: $0.size, writtenBytes: $0.writtenBytes,
                                                                    overlayBytes: $0.overlayBytes, refusedWrites: $0.refusedWrites) })
        // Reverse replication once reprotect named the original site (the recorded state, as it is now).
        if let shipper, let now = current?.failoverState(state.vm) ?? Optional(state), let to = now.reverseTo {
            status.reverse = shipper.status(destination: to, interval: now.reverseInterval, ready: now.reverseReady)
        }
        return status
    }
}
