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
    /// How the failover daemon opens the store (its PKI for a `replicafs://` store).
    var options = TargetOptions()

    func checkMountpoint(_ path: String) throws -> String {
        try MountDaemon.checkFuseDevice()
        return try MountDaemon.checkMountpoint(path, registry: registry)
    }

    func launchFailoverMount(vm: String, store: any TargetStore, mountpoint: String) throws -> LaunchedMount {
        let pki = try options.pki.map { ["--pki", try FileSystem.realPath($0)] } ?? []
        let access = ObjectStoreAccessOptions.arguments(options)
        let launched = try DaemonLauncher.launch(["failover", "serve", vm, "--target", store.location] + pki + access,
                                                 logPath: registry.paths(for: mountpoint).log, runDirectory: registry.runDirectory)
        return LaunchedMount(pid: launched.pid, seconds: Double(launched.detail) ?? 0)
    }

    func stopMount(_ mountpoint: String) throws { try replicafs.stopMount(mountpoint) }

    func isMounted(_ mountpoint: String) -> Bool { MountTable.mount(at: mountpoint) != nil }
}

/// A coordinator for the failover commands, printing progress unless `quiet`.
func coordinator(_ store: any TargetStore, quiet: Bool = false, options: TargetOptions = TargetOptions()) -> FailoverCoordinator {
    let c = FailoverCoordinator(store: store, mounts: ProcessFailoverMounts(options: options), progress: { line in if !quiet { print(line) } })
    // Recorded with a failover started here (absolute paths: `remount` may run elsewhere).
    var saved = options
    saved.pki = options.pki.map { (try? FileSystem.realPath($0)) ?? $0 }
    c.storeOptions = saved
    return c
}
