/// Where a protected VM's replication stands. The raw values are what `status` prints and
/// `status --json` carries.
public enum ReplicationState: String, Codable, Sendable {
    /// The initial copy waits for its scheduled start (`protect --initial HH:MM`).
    case initialReplicationScheduled = "initial replication scheduled"
    /// The disks are being copied to the target while writes go on.
    case initialReplication = "initial replication"
    /// Delta replication: logs ship at every copy-frequency tick.
    case protected
    /// The replica must be resynchronized before the next point (waiting for the window).
    case resyncRequired = "resync required"
    /// A resync is comparing blocks and sending the differing ones.
    case resynchronizing
    /// A resync finished; the next cycle makes its point.
    case resynchronizedWaitingForPoint = "resynchronized, waiting for the next point"
    /// What `resync` answers when a resync ran to the end.
    case resynchronized
    /// The store holds a planned or unplanned failover of the VM: it runs there, nothing
    /// replicates from here until failback (`VMState.nextStep` says what to run).
    case failedOver = "failed over"
}
