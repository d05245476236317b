import Foundation

/// Reverse replication of a reprotected failover as `status` and `jobs` show it, with the
/// same notions as forward replication: direction, last shipment, lag, pending bytes, health
/// and the retry schedule after failures.
public struct ReverseReplicationStatus: Codable, Sendable, Equatable {
    /// Always "reverse": from the failover mount back to `destination` (the original site).
    public var direction = "reverse"
    public var destination: String
    /// Seconds between shipments.
    public var intervalSeconds: Double
    /// False until reprotect has brought the original site level (no periodic shipment before).
    public var ready: Bool
    /// Paused by a failback's freeze.
    public var paused: Bool
    /// When the last shipment succeeded (ISO 8601), its data bytes, and all bytes applied so far.
    public var lastShipment: String?
    public var lastShipmentBytes: Int64 = 0
    public var bytesShipped: Int64 = 0
    public var shipments = 0
    /// Seconds since the last successful shipment (or since reverse replication started): the
    /// most the original site can be behind.
    public var lagSeconds: Double?
    /// Reverse log bytes on the failover host not yet applied at the original site.
    public var pendingBytes: Int64 = 0
    public var health: Health = .normal
    public var healthReasons: [String] = []
    /// Consecutive failed shipments, and when the next attempt runs.
    public var retryAttempt = 0
    public var nextRetryAt: String?
    public var nextRetryInSeconds: Double?
    public var lastError: String?

    public init(destination: String, intervalSeconds: Double, ready: Bool, paused: Bool) {
        self.destination = destination
        self.intervalSeconds = intervalSeconds
        self.ready = ready
        self.paused = paused
    }
}
