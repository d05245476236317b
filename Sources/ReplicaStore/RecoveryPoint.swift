/// A committed point in time the target store can reproduce every disk of a VM at.
public struct RecoveryPoint: Codable, Sendable, Equatable {
    public enum Consistency: String, Codable, Sendable {
        /// As after a power cut: every write acknowledged before the cut, nothing after.
        case crash
        /// Taken with the applications quiesced (a quiesce hook ran before the cut).
        case app
    }

    public var id: Int
    /// Wall-clock time of the cut, in nanoseconds since the epoch.
    public var timeNanos: UInt64
    public var consistency: Consistency
    /// The source's cut id (rotation) this point was taken at.
    public var cut: UInt64
    /// Each disk's size at the point.
    public var diskSizes: [String: Int64]

    public init(id: Int, timeNanos: UInt64, consistency: Consistency, cut: UInt64, diskSizes: [String: Int64]) {
        self.id = id
        self.timeNanos = timeNanos
        self.consistency = consistency
        self.cut = cut
        self.diskSizes = diskSizes
    }
}
