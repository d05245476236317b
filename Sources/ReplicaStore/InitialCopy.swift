/// An initial replication in progress: where each disk's chain starts and how far its
/// copy got, so that a copy interrupted by a crash resumes there.
public struct InitialCopy: Codable, Sendable {
    public struct Disk: Codable, Sendable {
        public var name: String
        public var chain: String
        public var nextLSN: UInt64
        /// Offset below which the replica holds the copy.
        public var copiedTo: Int64
        public var done: Bool

        public init(name: String, chain: String, nextLSN: UInt64, copiedTo: Int64, done: Bool) {
            self.name = name
            self.chain = chain
            self.nextLSN = nextLSN
            self.copiedTo = copiedTo
            self.done = done
        }
    }
    public var disks: [Disk]

    public init(disks: [Disk]) { self.disks = disks }
}
