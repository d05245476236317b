/// A protected VM's replication health, as Hyper-V Replica reports it: Normal; Warning when
/// replication falls behind (lag past the RPO, too many missed cycles, a recoverable error
/// being retried); Critical when a non-recoverable error stopped it until an administrator acts.
public enum Health: String, Codable, Sendable, Comparable, CaseIterable {
    case normal, warning, critical

    private var rank: Int {
        switch self {
        case .normal: 0
        case .warning: 1
        case .critical: 2
        }
    }

    public static func < (a: Health, b: Health) -> Bool { a.rank < b.rank }

    /// `replicafs status` exits with the worst health's code: 0 normal, 1 warning, 2 critical.
    public var exitCode: Int32 { Int32(rank) }
}
