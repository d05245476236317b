#if canImport(Glibc)
import Glibc
#endif

/// A plain pthread mutex. FUSE callbacks run on libfuse's threads and must not wait on
/// Swift tasks, so the I/O path uses this synchronous lock.
// @unchecked: a pthread mutex, the primitive the FUSE I/O path and `Condition` need.
public final class Lock: @unchecked Sendable {
    fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A condition variable used with `Lock`.
// @unchecked: a pthread condition variable, used only with its `Lock` held.
public final class Condition: @unchecked Sendable {
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        cond = .allocate(capacity: 1)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    /// Waits; the caller holds `lock`, which is released while waiting and held again after.
    public func wait(_ lock: Lock) { pthread_cond_wait(cond, lock.mutex) }
    public func broadcast() { pthread_cond_broadcast(cond) }
}
