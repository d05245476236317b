/// How a protected mount talks to the kernel.
public struct MountOptions: Sendable {
    /// Let the kernel cache and merge writes (a volatile write cache, like a disk's); fsync stays
    /// the durability point. Off: the daemon sees every write exactly as the application made it.
    public var writebackCache = true
    /// Upper bound on libfuse worker threads.
    public var maxThreads: UInt32 = 10
    /// Let other users (a hypervisor's) open the files; needs root or user_allow_other.
    public var allowOther = false
    /// Kernel readahead for the mount, in KiB (the FUSE default of 128 KiB starves cold sequential reads).
    public var readaheadKiB: UInt32 = 2048
    /// Share of the machine's dirty-page limit the mount may use, in percent. The kernel gives a
    /// FUSE mount 1% under a strict limit, which throttles writers to one request at a time.
    public var dirtyRatio: UInt32 = 20

    public init() {}
}
