import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaSource
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Everything `replicafs mount` does in the daemon process: check the inputs, clean up a
/// stale mount left by a killed daemon, open the disk set, mount, announce readiness,
/// serve until unmounted (or SIGTERM), then seal the logs.
public struct MountDaemon {
    public let disksDir: String
    public let mountpoint: String
    public let options: MountOptions
    public let registry: MountRegistry
    /// `HOST:PORT` to serve Prometheus metrics on (`--metrics`), or nil.
    public var metricsAddress: String?

    public init(disksDir: String, mountpoint: String, options: MountOptions, registry: MountRegistry = MountRegistry()) {
        self.disksDir = disksDir
        self.mountpoint = mountpoint
        self.options = options
        self.registry = registry
    }

    /// The absolute mountpoint path without stat-ing the mountpoint itself (a dead FUSE
    /// mount answers ENOTCONN).
    public static func absolutePath(_ path: String) throws -> String {
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        let url = URL(fileURLWithPath: trimmed)
        let parent = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        guard FileSystem.exists(parent) else { throw ReplicaError("mountpoint \(path) does not exist") }
        let realParent = try FileSystem.realPath(parent)
        return realParent == "/" ? "/" + name : realParent + "/" + name
    }

    /// Checks everything that can be checked before mounting; returns the absolute mountpoint.
    /// A stale replicafs mount (its daemon killed) is lazily unmounted here.
    public func preflight() throws -> String {
        try Self.checkFuseDevice()
        guard FileSystem.exists(disksDir) else { throw ReplicaError("disks directory \(disksDir) does not exist") }
        guard FileSystem.isDirectory(disksDir) else { throw ReplicaError("disks directory \(disksDir) is not a directory") }
        if let metricsAddress { _ = try MetricsServer.parse(metricsAddress) }
        let mp = try Self.checkMountpoint(mountpoint, registry: registry)
        let realDisks = try FileSystem.realPath(disksDir)
        if mp == realDisks || mp.hasPrefix(realDisks + "/") {
            throw ReplicaError("mountpoint \(mp) lies inside the disks directory \(realDisks)")
        }
        try StateDirectory.check(disksDir: realDisks)
        if let st = try? FileSystem.lstat(realDisks + "/" + DiskSet.lockFileName), (st.st_mode & S_IFMT) == S_IFLNK {
            throw ReplicaError("refusing \(realDisks)/\(DiskSet.lockFileName): it is a symlink (remove it)")
        }
        return mp
    }

    public static func checkFuseDevice() throws {
        guard FileSystem.exists("/dev/fuse") else {
            throw ReplicaError("no /dev/fuse: the fuse kernel module is not loaded (modprobe fuse) or the device is not in this container")
        }
    }

    /// Checks that `mountpoint` is an empty directory nothing is mounted on; returns its
    /// absolute path. A stale replicafs mount (its daemon killed) is lazily unmounted here.
    public static func checkMountpoint(_ mountpoint: String, registry: MountRegistry) throws -> String {
        let mp = try absolutePath(mountpoint)
        if let mounted = MountTable.mount(at: mp) {
            guard mounted.fsType == "fuse.replicafs" else {
                throw ReplicaError("mountpoint \(mp) is already mounted (\(mounted.fsType) from \(mounted.source))")
            }
            guard let problem = StaleMount.problem(mp, registry: registry) else {
                throw ReplicaError("mountpoint \(mp) is already mounted by replicafs (daemon pid \(registry.lookup(mp)?.pid ?? 0))")
            }
            // The daemon is gone, stopped or stuck but the kernel still holds the mount:
            // abort its connection, end the old daemon, detach the mount.
            let note = try StaleMount.recover(mounted, registry: registry, problem: problem)
            FileHandle.standardError.write(Data((note + "\n").utf8))
        } else if let entry = registry.lookup(mp), DaemonProcess(pid: entry.pid).state == .gone {
            // A dead daemon's record whose mount was detached already: the mountpoint is free.
            registry.remove(mp)
        }
        guard FileSystem.exists(mp) else { throw ReplicaError("mountpoint \(mp) does not exist") }
        guard FileSystem.isDirectory(mp) else { throw ReplicaError("mountpoint \(mp) is not a directory") }
        guard try FileSystem.list(mp).isEmpty else { throw ReplicaError("mountpoint \(mp) is not empty") }
        return mp
    }

    /// Mounts and serves until unmounted. `ready` is called once the mount is live (or with
    /// the error that prevented it). SIGTERM, SIGINT and SIGHUP unmount cleanly.
    public func run(ready: (Error?) -> Void) throws {
        // Block the stop signals in every thread; one thread waits for them.
        let signals = StopSignalWatcher()
        // A launcher gone before the ready line must not kill the daemon of a live mount.
        signal(SIGPIPE, SIG_IGN)

        let server: FuseServer
        let control: ControlServer
        let replicator: Replicator
        let mp: String
        var metrics: MetricsServer?
        do {
            mp = try preflight()
            // Bound before anything is mounted: an address in use stops the mount here.
            metrics = try metricsAddress.map { try MetricsServer(address: $0) }
            try StateDirectory.prepare(disksDir: try FileSystem.realPath(disksDir))
            let disks = try DiskSet.open(directory: disksDir)
            for skipped in disks.skipped {
                FileHandle.standardError.write(Data("replicafs: skipping \(skipped.name): \(skipped.reason) (\(DiskEntries.rule))\n".utf8))
            }
            server = try FuseServer(disks: disks, mountpoint: mp, options: options)
            let paths = registry.paths(for: mp)
            try FileSystem.mkdirs(registry.runDirectory, mode: 0o700)
            let mounted = mp
            replicator = Replicator(disks: disks) { names in try HelperProcess.flush(names, in: mounted) }
            replicator.mountpoint = mp
            control = try ControlServer(path: paths.socket) { [server, replicator] request in
                try Self.answer(request, server: server, replicator: replicator)
            }
            try server.mount()
            try registry.record(.init(pid: getpid(), mountpoint: mp, disksDir: disks.directory, socket: paths.socket))
        } catch {
            metrics?.stop()
            ready(error)
            throw error
        }
        control.start()
        replicator.start()
        metrics?.serve(replicator)
        signals.start { server.requestUnmount() }
        ready(nil)
        // Commands find the VMs of this disks-dir by name from now on (best effort, after
        // the mount answers: it never delays readiness).
        VMRegistry().recordProtected(disksDir: server.disks.directory)
        defer {
            signals.stop()
            metrics?.stop()
            replicator.stop()
            control.stop()
            registry.remove(mp)
        }
        try server.run(beforeClose: { replicator.stopAndWait() })
    }

    /// What the protected mount's control socket does.
    static func answer(_ request: ControlRequest, server: FuseServer, replicator: Replicator) throws -> ControlResponse {
        switch request.op {
        case .ping:
            return ControlResponse(ok: true)
        case .rotate:
            return ControlResponse(ok: true, rotation: try server.disks.rotate())
        case .status:
            var status = MountStatus(
                pid: getpid(), mountpoint: server.mountpoint, disksDir: server.disks.directory,
                writebackCache: server.options.writebackCache, images: server.disks.states)
            status.vms = replicator.vmStates
            status.skipped = server.disks.skipped
            return ControlResponse(ok: true, status: status)
        case .snapshot:
            guard let vm = request.vm else { throw ReplicaError("snapshot needs a VM name") }
            return ControlResponse(ok: true, point: try replicator.snapshot(vm, appConsistent: request.appConsistent ?? false))
        case .resume:
            guard let vm = request.vm else { throw ReplicaError("resume needs a VM name") }
            _ = try replicator.resume(vm)
            return ControlResponse(ok: true)
        case .resync:
            guard let vm = request.vm else { throw ReplicaError("resync needs a VM name") }
            return ControlResponse(ok: true, resync: try replicator.requestResync(vm, now: request.now ?? false))
        case .freeze, .unfreeze, .reprotect, .ship:
            throw ReplicaError("\(request.op.rawValue) is for failover mounts")
        }
    }
}
