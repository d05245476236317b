/// The one version of ReplicaFS: `replicafs --version` prints it, and anything that reports
/// the version (status, a future receiver's handshake) reads it here, so it cannot disagree.
public enum ReplicaVersion {
    /// Semantic version of this source tree; raised when a release is cut.
    public static let current = "0.13.0"
}
