import Foundation
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Whether an image and its active change log are still what the mount daemon logged, checked
/// at every cut and at clean shutdown. The daemon holds both files open, so a log deleted or
/// replaced from outside, or an image truncated or written beside the mount, would otherwise go
/// unnoticed: the log chain would miss changes, and a point cut from it would be wrong yet
/// marked valid. A break found here is kept until a resync starts a new chain.
///
/// What is checked: the log still has a link and its name still leads to it; the image's name
/// still leads to the open image; with no write of the mount in flight, the image's size is the
/// one the mount's own changes left, and its ctime is not later than the end of the mount's last
/// change (every write, truncate or attribute change through the mount moves that time on, so
/// only a change from outside leaves a later ctime). A change from outside that is immediately
/// followed by one through the mount, within the same clock tick, can still escape the ctime check.
// @unchecked: updated from FUSE worker threads under its journal's lock; fields guarded by `lock`.
final class ChainIntegrity: @unchecked Sendable {
    private let lock = Lock()
    private var lastOwnChangeNanos: UInt64
    private var expectedSize: Int64
    private var breakReason: String?

    init(image: FileDescriptor) {
        lastOwnChangeNanos = Clock.nowNanos()
        expectedSize = (try? image.size()) ?? 0
    }

    /// After a change through the mount that may extend the image to `end` (nil: no size change).
    func noteChange(extendingTo end: Int64? = nil) {
        let now = Clock.nowNanos()
        lock.withLock {
            lastOwnChangeNanos = max(lastOwnChangeNanos, now)
            if let end { expectedSize = max(expectedSize, end) }
        }
    }

    /// After the mount set the image's size.
    func noteSize(_ size: Int64) {
        let now = Clock.nowNanos()
        lock.withLock {
            lastOwnChangeNanos = max(lastOwnChangeNanos, now)
            expectedSize = size
        }
    }

    /// The first break found since the last resync, if any.
    var broken: String? { lock.withLock { breakReason } }

    /// A resync started a new chain from the image as it is now: forget the break and take the
    /// image's present state as the mount's.
    func restart(image: FileDescriptor) {
        let size = (try? image.size()) ?? 0
        let now = Clock.nowNanos()
        lock.withLock {
            breakReason = nil
            expectedSize = size
            lastOwnChangeNanos = max(lastOwnChangeNanos, now)
        }
    }

    /// Checks `image` and the active `log` now, records the first break, and returns it.
    /// `writesInFlight`: image writes of the mount still running (size and ctime are then not
    /// comparable and are left for the next check).
    @discardableResult
    func check(image: FileDescriptor, log: ChangeLog, writesInFlight: Bool) -> String? {
        if let reason = broken { return reason }
        guard let problem = Self.problem(image: image, log: log, expectedSize: lock.withLock { expectedSize },
                                         lastOwnChange: lock.withLock { lastOwnChangeNanos }, writesInFlight: writesInFlight)
        else { return nil }
        return lock.withLock {
            if breakReason == nil { breakReason = problem }
            return breakReason
        }
    }

    private static func problem(image: FileDescriptor, log: ChangeLog, expectedSize: Int64, lastOwnChange: UInt64,
                                writesInFlight: Bool) -> String? {
        let logName = (log.path as NSString).lastPathComponent
        guard let open = try? log.fd.stat() else { return "the active log \(logName) cannot be read" }
        if open.st_nlink == 0 { return "the active log \(logName) was deleted from outside the mount" }
        guard let named = try? FileSystem.stat(log.path), named.st_ino == open.st_ino, named.st_dev == open.st_dev else {
            return "the active log \(logName) was renamed or replaced from outside the mount"
        }
        let imageName = (image.path as NSString).lastPathComponent
        guard let st = try? image.stat() else { return "image \(imageName) cannot be read" }
        guard let path = try? FileSystem.stat(image.path), path.st_ino == st.st_ino, path.st_dev == st.st_dev else {
            return "image \(imageName) was renamed, deleted or replaced outside the mount"
        }
        guard !writesInFlight else { return nil }
        if Int64(st.st_size) != expectedSize {
            return "image \(imageName) changed outside the mount (size \(st.st_size), the mount left \(expectedSize))"
        }
        let ctime = UInt64(max(0, st.st_ctim.tv_sec)) &* 1_000_000_000 &+ UInt64(max(0, st.st_ctim.tv_nsec))
        if ctime > lastOwnChange {
            return "image \(imageName) changed outside the mount (changed after the mount's last write)"
        }
        return nil
    }
}
