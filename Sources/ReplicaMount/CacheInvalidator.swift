import CFuse
import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Drops pages from the kernel's cache of a mount's files (fuse_lowlevel_notify_inval_inode)
/// after a write the daemon refused (ENOSPC on the image, EROFS while frozen for failback):
/// with the writeback cache the application's bytes sit in the page cache, and without this
/// the mount would go on showing them although neither the disk nor the replica holds them.
/// The next read then comes from the disk. Notifications run on one thread of their own: the
/// request that failed must be answered first (its pages stay under writeback until then),
/// and a worker thread blocked on a page lock could starve the session of workers.
final class CacheInvalidator: @unchecked Sendable {
    private let session: OpaquePointer
    private let lock = Lock()
    private let pending = Condition()
    private var queue: [(ino: fuse_ino_t, offset: Int64, length: Int64)] = []
    private var thread: Thread?

    init(session: OpaquePointer) { self.session = session }

    /// Queues the range [offset, offset + length) of inode `ino` to be dropped from the cache.
    func invalidate(_ ino: fuse_ino_t, offset: Int64, length: Int64) {
        lock.withLock {
            queue.append((ino, offset, length))
            if thread == nil {
                let t = Thread { [self] in drain() }
                t.name = "replicafs-invalidate"
                thread = t
                t.start()
            }
        }
        pending.broadcast()
    }

    private func drain() {
        while true {
            lock.lock()
            while queue.isEmpty { pending.wait(lock) }
            let batch = queue
            queue.removeAll()
            lock.unlock()
            for item in batch {
                // -ENOENT: the kernel no longer caches the inode, nothing to drop.
                let rc = fuse_lowlevel_notify_inval_inode(session, item.ino, off_t(item.offset), off_t(item.length))
                if rc != 0 && rc != -ENOENT {
                    FileHandle.standardError.write(Data("replicafs: cannot drop the cached pages of inode \(item.ino) at \(item.offset)+\(item.length) after a failed write: \(String(cString: strerror(-rc)))\n".utf8))
                }
            }
        }
    }
}
