/// What one reverse pass (reprotect, failback) moved.
public struct ReverseSyncReport: Codable, Sendable {
    public struct DiskSync: Codable, Sendable {
        public var compared: Int64
        public var sent: Int64
        public var differingBlocks: Int?

        public init(compared: Int64, sent: Int64, differingBlocks: Int?) {
            self.compared = compared
            self.sent = sent
            self.differingBlocks = differingBlocks
        }
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

    public init(vm: String, mode: String, to: String, bytesSentRunning: Int64, bytesSentFinal: Int64, bytesSent: Int64,
                diskBytes: Int64, downtimeSeconds: Double, seconds: Double, point: Int) {
        self.vm = vm
        self.mode = mode
        self.to = to
        self.bytesSentRunning = bytesSentRunning
        self.bytesSentFinal = bytesSentFinal
        self.bytesSent = bytesSent
        self.diskBytes = diskBytes
        self.downtimeSeconds = downtimeSeconds
        self.seconds = seconds
        self.point = point
    }
}
