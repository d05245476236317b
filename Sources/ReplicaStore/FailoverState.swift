/// A VM failed over from its target store: which kind, to which recovery point, where its
/// disks are mounted, and what failback needs. Kept by the target store (`failoverState`);
/// its presence is what says the VM is failed over. The failover's own files (copy-on-write
/// layers, reverse logs, mapped networks) live in `workDirectory`, on the failing-over host.
public struct FailoverState: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// A drill: replication into the store goes on, the drill's writes stay in the drill.
        case test
        /// The source was stopped and everything it logged shipped first: no data lost.
        case planned
        /// The primary is gone: the store alone, at a point the operator chose.
        case unplanned
    }

    public var vm: String
    public var kind: Kind
    public var point: RecoveryPoint
    public var mountpoint: String
    public var disks: [String]
    public var startedNanos: UInt64
    /// Set by `failover commit`: the point can no longer be changed.
    public var committed = false
    /// The primary's disks directory, where failback returns to (known after a planned
    /// failover, or from `--disks-dir`).
    public var sourceDisksDir: String?
    /// Set by `reprotect`: the disks directory reverse replication keeps in sync, and its record.
    public var reverseTo: String?
    /// The PKI directory reaching `reverseTo` when it is a `replicafs://` URL (nil: the default).
    public var reversePKI: String?
    public var reverseSyncs = 0
    public var reverseBytesSent: Int64 = 0
    public var lastReverseSync: String?
    /// Set once the original site holds the failed-over disks as of reverse replication's cut:
    /// from then on the failover mount's daemon ships its reverse logs every `reverseInterval`.
    public var reverseReady = false
    public var reverseInterval: Double = 30
    /// Where the failover mount keeps its own files: the disks' copy-on-write layers, the
    /// reverse logs, network.json.
    public var workDirectory: String

    /// The failover's reverse change logs (reprotect).
    public var reverseLogDirectory: String { workDirectory + "/reverse" }

    public init(vm: String, kind: Kind, point: RecoveryPoint, mountpoint: String, disks: [String],
                startedNanos: UInt64, sourceDisksDir: String?, workDirectory: String) {
        self.vm = vm
        self.kind = kind
        self.point = point
        self.mountpoint = mountpoint
        self.disks = disks
        self.startedNanos = startedNanos
        self.sourceDisksDir = sourceDisksDir
        self.workDirectory = workDirectory
    }

    /// One line for errors and status.
    public var summary: String { "\(kind.rawValue) failover to point \(point.id) mounted on \(mountpoint)" }
}
