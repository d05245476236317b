/// What one reverse pass (reprotect, failback) moved.
public struct ReverseSyncReport: Codable, Sendable {
    public struct DiskSync: Codable, Sendable {
        public var compared: Int64
        public var sent: Int64
        public var differingBlocks: Int?
    }
    public var disks: [String: DiskSync]
    public var compared: Int64
    public var sent: Int64
    public var seconds: Double

    public init(disks: [String: DiskSync] = [:], compared: Int64 = 0, sent: Int64 = 0, seconds: Double = 0) {
        self.disks = disks
        self.compared = compared
        self.sent = sent
        self.seconds = seconds
    }
}

/// What a failback did.
public struct FailbackReport: Codable, Sendable {
    public var vm: String
    public var mode: String
    public var to: String
    /// Bytes sent while the VM kept running, and during the downtime.
    public var bytesSentRunning: Int64
    public var bytesSentFinal: Int64
    public var bytesSent: Int64
    public var diskBytes: Int64
    public var downtimeSeconds: Double
    public var seconds: Double
    public var point: Int
}
