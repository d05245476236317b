/// An error meant for the operator: one line that names the problem and the thing it concerns.
/// `kind` tells the replicator whether waiting can fix it (see ReplicationFailure); errors
/// compare by their text alone.
public struct ReplicaError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable {
        case unspecified, recoverable, nonRecoverable
        /// The target cannot follow the shipped logs (a broken or foreign chain): neither
        /// waiting nor `resume` fixes it, a resync does, and the replicator triggers one.
        case resyncRequired
        /// Refused because the VM waits for its resync (window closed): not a failed attempt.
        case waitingForResync
    }
    public let description: String
    public let kind: Kind
    public init(_ description: String, kind: Kind = .unspecified) {
        self.description = description
        self.kind = kind
    }
    public static func == (a: ReplicaError, b: ReplicaError) -> Bool { a.description == b.description }
}
