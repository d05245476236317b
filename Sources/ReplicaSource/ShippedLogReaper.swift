import Dispatch
import Synchronization
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Deletes logs the target has made durable, off the replication path: each is renamed into
/// `<disks-dir>/.replicafs/shipped/` at once, so no later cycle sees it, and unlinked on a
/// background queue, because freeing a large file's blocks takes ext4 about 0.1 s per 512 MiB
/// (a fifth of a bulk snapshot's time). A daemon that stops first leaves files there; the next
/// start empties the directory.
public final class ShippedLogReaper: Sendable {
    public let directory: String
    private let queue = DispatchQueue(label: "replicafs-reaper")
    private let counter = Atomic<Int>(0)

    public init(disksDir: String) {
        directory = disksDir + "/.replicafs/shipped"
        try? FileSystem.mkdirs(directory)
        for name in (try? FileSystem.list(directory)) ?? [] { _ = unlink(directory + "/" + name) }
    }

    /// Takes a shipped log out of the disks directory now; its blocks are freed later.
    public func retire(_ path: String) throws {
        let n = counter.add(1, ordering: .relaxed).newValue
        let target = directory + "/\(n)-" + String(path[path.index(after: path.lastIndex(of: "/") ?? path.startIndex)...])
        guard rename(path, target) == 0 else { throw SystemError.current("rename", path) }
        queue.async { _ = unlink(target) }
    }

    /// Waits until every retired log is gone.
    public func drain() { queue.sync {} }
}
