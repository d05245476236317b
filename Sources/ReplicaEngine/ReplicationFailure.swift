import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A failed replication attempt sorted the way the seeds sort them: recoverable errors (the
/// target unreachable or not mounted, no space, low memory, an I/O error at the target, a
/// timeout) are retried on the RetryPolicy's back-off; a broken or foreign log chain refused
/// by the target is not retried either, but it is what a resync fixes, so it triggers one
/// (`resync`: the VM is in Warning as "resync required", not Critical); the other
/// non-recoverable ones (an invalid replica state, access refused by the store, a disk or VM
/// that cannot be found) put the VM in Critical until an administrator acts, because trying
/// again cannot fix them.
public struct ReplicationFailure: Sendable, Equatable {
    public var recoverable: Bool
    /// What went wrong, in a few words ("target store full").
    public var reason: String
    /// The error itself, one line.
    public var message: String
    /// Not recoverable by waiting, but by a resync, which the replicator triggers (issue 5's
    /// trigger (d): a broken sequence reported by the target). Never Critical, never backed off.
    public var resync: Bool

    public init(recoverable: Bool, reason: String, message: String, resync: Bool = false) {
        self.recoverable = recoverable
        self.reason = reason
        self.message = message
        self.resync = resync && !recoverable
    }

    /// Classifies `error` from an attempt to replicate to the store at `store` (its root path):
    /// errno decides for system errors, where the path tells the target from the source;
    /// a ReplicaError says itself. Unknown errors count as recoverable: retrying costs little,
    /// and Critical should mean that a person is needed.
    public static func classify(_ error: Error, store: String?) -> ReplicationFailure {
        let message = "\(error)"
        if let e = error as? ReplicaError {
            switch e.kind {
            case .nonRecoverable: return .init(recoverable: false, reason: "non-recoverable error", message: message)
            case .resyncRequired, .waitingForResync: return .init(recoverable: false, reason: "resync required", message: message, resync: true)
            case .recoverable, .unspecified: return .init(recoverable: true, reason: "recoverable error", message: message)
            }
        }
        guard let e = error as? SystemError else { return .init(recoverable: true, reason: "recoverable error", message: message) }
        let atTarget = store.map { e.path == $0 || e.path.hasPrefix($0 + "/") } ?? false
        let side = atTarget ? "target" : "source"
        func recoverable(_ reason: String) -> ReplicationFailure { .init(recoverable: true, reason: reason, message: message) }
        func fatal(_ reason: String) -> ReplicationFailure { .init(recoverable: false, reason: reason, message: message) }
        switch e.errno {
        case ENOSPC, EDQUOT:
            return recoverable(atTarget ? "target store full" : "source disk full")
        case ENOMEM, ENOBUFS:
            return recoverable("low memory")
        case ETIMEDOUT, EAGAIN, EINTR, EBUSY:
            return recoverable("timed out or busy at the \(side)")
        case ENOTCONN, EHOSTUNREACH, EHOSTDOWN, ENETUNREACH, ENETDOWN, ECONNREFUSED, ECONNRESET, ECONNABORTED, EPIPE, ESTALE:
            return recoverable("\(side) unreachable")
        case EIO:
            // At the target a failing link or device may come back; an unreadable source log
            // reads the same on every attempt (a resync is what fixes it).
            return atTarget ? recoverable("I/O error at the target") : fatal("I/O error at the source")
        case ENOENT:
            // The store's root gone is a missing mount or share; a file missing inside a store
            // that is there, or a source disk missing, will not come back by waiting.
            if atTarget, let store, !FileSystem.isDirectory(store) { return recoverable("target store not mounted") }
            return atTarget ? fatal("invalid replica state") : fatal("disk not found")
        case EACCES, EPERM, EROFS:
            return fatal("access denied by the \(side)")
        default:
            return recoverable("error at the \(side)")
        }
    }
}
