import Foundation
import ReplicaStore

/// When a VM's replication is tried again after a recoverable failure: the seeds' back-off
/// from the first failed attempt, 1, 2, 4, 8 and 10 minutes, then every 30 minutes while the
/// error persists. `timeScale` shrinks every delay (0.01 makes a minute 0.6 s) so tests can
/// run the schedule in seconds.
public struct RetryPolicy: Sendable, Equatable {
    /// Minutes to wait after the 1st, 2nd, ... consecutive failure.
    public static let backOffMinutes: [Double] = [1, 2, 4, 8, 10]
    /// Minutes between attempts once the back-off steps are used up.
    public static let steadyMinutes: Double = 30
    /// Environment variable the mount daemon reads when the policy sets no scale.
    public static let timeScaleVariable = "REPLICAFS_TIME_SCALE"

    public var timeScale: Double

    public init(timeScale: Double = 1) {
        self.timeScale = timeScale > 0 && timeScale.isFinite ? timeScale : 1
    }

    /// The policy's scale, else `REPLICAFS_TIME_SCALE`, else real time.
    public init(policy: ReplicationPolicy, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(timeScale: policy.retryTimeScale ?? environment[Self.timeScaleVariable].flatMap(Double.init) ?? 1)
    }

    /// Seconds to wait after `failures` consecutive failed attempts (1 is the first failure).
    public func delay(afterFailures failures: Int) -> Double {
        guard failures > 0 else { return 0 }
        let minutes = failures <= Self.backOffMinutes.count ? Self.backOffMinutes[failures - 1] : Self.steadyMinutes
        return minutes * 60 * timeScale
    }
}
