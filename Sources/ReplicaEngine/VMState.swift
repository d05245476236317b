import Foundation

/// What `status` and `jobs` report of one protected VM: its replication state, its last
/// point and lag, what is pending, its health and retry schedule.
public struct VMState: Codable, Sendable {
    public var vm: String
    public var state: ReplicationState
    public var initialPercent: Double?
    public var lastPoint: Int?
    public var lastPointTime: String?
    public var lagSeconds: Double?
    public var pendingBytes: Int64
    public var lastError: String?
    /// Per recent cycle: seconds from the previous cut (the oldest write it shipped could
    /// be acknowledged right after it) to this cycle's point being committed at the target.
    public var recentLags: [Double] = []
    /// Log bytes committed at the target (records with their data), and the seconds the commits took.
    public var appliedBytes: Int64 = 0
    public var applySeconds: Double = 0
    /// Log bytes shipped, and the bytes that crossed to the target (less when compressed).
    public var logBytesShipped: Int64 = 0
    public var bytesSent: Int64 = 0
    /// During the initial copy: its speed and the estimated seconds left.
    public var initialMBps: Double?
    public var initialETASeconds: Double?
    /// When a scheduled initial replication will start.
    public var initialScheduledAt: String?
    /// Health and why (HealthTracker): the retry schedule after failures, missed cycles.
    public var health: Health = .normal
    public var healthReasons: [String] = []
    /// Consecutive failed attempts, and when the next one runs (none while Critical).
    public var retryAttempt: Int = 0
    public var nextRetryAt: String?
    public var nextRetryInSeconds: Double?
    public var cyclesDueLastHour: Int = 0
    public var cyclesMissedLastHour: Int = 0
    /// Resync (Replicator+Resync.swift): why it is required, and its progress while it runs.
    public var resyncReason: String?
    public var resyncPercent: Double?
    /// While failed over (`state` is failed over): the failover, and the command to run next.
    public var failover: String?
    public var nextStep: String?
    /// The bandwidth limit (`--max-bandwidth`, a rate or schedule), the rate it sets now (nil:
    /// unlimited at this hour), the seconds sends waited on it, and whether they wait now:
    /// a lag that grows while `throttled` is the limit at work, not a failure.
    public var maxBandwidth: String?
    public var bandwidthLimitBytesPerSecond: Int?
    public var throttledSeconds: Double?
    public var throttled: Bool?
}
