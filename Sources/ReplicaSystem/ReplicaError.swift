/// An error meant for the operator: one line that names the problem and the thing it concerns.
/// `kind` tells the replicator whether waiting can fix it (see ReplicationFailure); `code`
/// says what went wrong for a program (a plan's report, a test). Errors compare by code; two
/// errors without a code (most of them, still) compare by their text.
public struct ReplicaError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: Sendable {
        case unspecified, recoverable, nonRecoverable
        /// The target cannot follow the shipped logs (a broken or foreign chain): neither
        /// waiting nor `resume` fixes it, a resync does, and the replicator triggers one.
        case resyncRequired
        /// Refused because the VM waits for its resync (window closed): not a failed attempt.
        case waitingForResync
    }
    /// What failed, for callers that act on it rather than print it.
    public enum Code: String, Codable, Sendable {
        case unspecified
        /// The store holds no replica of the VM.
        case unknownVM
        /// The selected recovery point does not exist (or none does yet).
        case noSuchPoint
        /// A failover step on a VM that is not failed over (or not in the needed kind).
        case notFailedOver
        /// The VM is failed over already.
        case alreadyFailedOver
        /// Arguments that contradict each other or the VM's state.
        case badRequest
        /// A failover or failback step failed partway; the message says how to go on.
        case stepFailed
        /// The failover mount is not running.
        case mountNotRunning
        /// The mount daemon could not start.
        case launchFailed
        /// A conditional write lost: another writer changed the object first (object store).
        case preconditionFailed
        /// A commit names a log the receiver does not hold (it restarted and dropped what it
        /// had staged, or never got it): the sender sends it again.
        case notUploaded
    }
    public let description: String
    public let kind: Kind
    public let code: Code
    public init(_ description: String, kind: Kind = .unspecified, code: Code = .unspecified) {
        self.description = description
        self.kind = kind
        self.code = code
    }
    public static func == (a: ReplicaError, b: ReplicaError) -> Bool {
        a.code == b.code && (a.code != .unspecified || a.description == b.description)
    }
}
