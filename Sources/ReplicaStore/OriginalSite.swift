import ReplicaLog

/// The original site's disks directory, as reprotect and failback write it: a local directory
/// (`LocalOriginalSite`) or one another host serves (`replicafs serve --disks-dir`, reached as
/// `replicafs://HOST:PORT`). Every operation names a disk of that one directory.
public protocol OriginalSite: Sendable {
    /// What messages and the failover state name: the directory, or `replicafs://HOST:PORT`.
    var location: String { get }
    /// The directory when it is on this host (fingerprints and the VM's protection are then
    /// recorded beside the disks), nil across hosts.
    var localDirectory: String? { get }
    /// Makes `disk` equal the local file `source` block by block: only blocks whose SHA-256
    /// differs are written; the disk is created or resized to the source's size, then synced.
    func sync(disk: String, from source: String, blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> BlockSync.Report
    /// Copies every byte of `source` over `disk` (full-download); returns the bytes sent.
    func copy(disk: String, from source: String, progress: ((Int64, Int64) -> Void)?) throws -> Int64
    /// Replays sealed reverse logs (one disk's, in order; chain and checksums checked) onto
    /// `disk`; returns the data bytes applied.
    func apply(disk: String, logs: [LogScan]) throws -> Int64
    /// Removes the change logs a source left beside `disks` (before the failback's rebase).
    func removeSourceLogs(of disks: [String]) throws
    /// The size of `disk` in bytes.
    func size(of disk: String) throws -> Int64
}

extension BlockSync.Report {
    /// A comparison done elsewhere (an original site on another host).
    public init(remote blockSize: Int, blocks: Int, differingBlocks: Int, bytesCompared: Int64, bytesSent: Int64, seconds: Double, sourceSize: Int64) {
        self.blockSize = blockSize
        self.blocks = blocks
        self.differingBlocks = differingBlocks
        self.bytesCompared = bytesCompared
        self.bytesSent = bytesSent
        self.seconds = seconds
        self.sourceSize = sourceSize
    }
}
