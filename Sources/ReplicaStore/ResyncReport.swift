/// What a resync into a target store compared and sent.
public struct ResyncReport: Codable, Sendable {
    public var vm: String
    public var disks: [String: BlockSync.Report]
    public var bytesCompared: Int64
    public var bytesSent: Int64
    public var diskBytes: Int64
    public var seconds: Double

    public init(vm: String, disks: [String: BlockSync.Report], bytesCompared: Int64, bytesSent: Int64,
                diskBytes: Int64, seconds: Double) {
        self.vm = vm
        self.disks = disks
        self.bytesCompared = bytesCompared
        self.bytesSent = bytesSent
        self.diskBytes = diskBytes
        self.seconds = seconds
    }
}
