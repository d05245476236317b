import Foundation
import ReplicaRecovery
import ReplicaStore
import ReplicaSystem
import ReplicaMount
import ReplicaControl

/// The failover steps' mounts as this binary runs them: FUSE checks from `MountDaemon`, a
/// `failover serve` daemon started with `DaemonLauncher`, unmounts with `stopMount`.
struct ProcessFailoverMounts: FailoverMounts {
    let registry = MountRegistry()

    func checkMountpoint(_ path: String) throws -> String {
        try MountDaemon.checkFuseDevice()
        return try MountDaemon.checkMountpoint(path, registry: registry)
    }

    func launchFailoverMount(vm: String, store: any TargetStore, mountpoint: String) throws -> LaunchedMount {
        let launched = try DaemonLauncher.launch(["failover", "serve", vm, "--target", store.location],
                                                 logPath: registry.paths(for: mountpoint).log, runDirectory: registry.runDirectory)
        return LaunchedMount(pid: launched.pid, seconds: Double(launched.detail) ?? 0)
    }

    func stopMount(_ mountpoint: String) throws { try replicafs.stopMount(mountpoint) }

    func isMounted(_ mountpoint: String) -> Bool { MountTable.mount(at: mountpoint) != nil }
}

/// A coordinator for the failover commands, printing progress unless `quiet`.
func coordinator(_ store: any TargetStore, quiet: Bool = false) -> FailoverCoordinator {
    FailoverCoordinator(store: store, mounts: ProcessFailoverMounts(), progress: { line in if !quiet { print(line) } })
}
