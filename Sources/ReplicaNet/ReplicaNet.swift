import ReplicaStore

/// The URL scheme of a receiver on another host: `replicafs://HOST:PORT`.
public enum ReplicaNet {
    public static let scheme = "replicafs"
    /// The receiver's default port (the seeds' HTTPS replication port).
    public static let defaultPort = 8084
}
