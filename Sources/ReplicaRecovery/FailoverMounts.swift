import ReplicaStore
/// What the failover steps need from the process that runs them: checking and preparing a
/// mountpoint, starting a failover mount's daemon and stopping a mount. The CLI supplies the
/// real one (FUSE, a daemon process); a test may supply its own to drive each step alone.
public protocol FailoverMounts: Sendable {
    /// Checks that `path` can take a mount (FUSE present, an empty directory); returns it absolute.
    func checkMountpoint(_ path: String) throws -> String

    /// Starts the daemon that mounts `vm`'s failover (as recorded in `store`) and waits until
    /// it serves.
    func launchFailoverMount(vm: String, store: any TargetStore, mountpoint: String) throws -> LaunchedMount

    /// Unmounts a replicafs mount cleanly and waits for its daemon to exit (its writes durable).
    func stopMount(_ mountpoint: String) throws

    /// Whether a replicafs mount is on `mountpoint`.
    func isMounted(_ mountpoint: String) -> Bool
}

/// A mount daemon once it serves.
public struct LaunchedMount: Sendable {
    public var pid: Int32
    /// Seconds the daemon took to open the disks and mount them.
    public var seconds: Double

    public init(pid: Int32, seconds: Double) {
        self.pid = pid
        self.seconds = seconds
    }
}
