import ReplicaLog
import ReplicaSource
import ReplicaStore
import ReplicaSystem

/// The original site's disks directory on this host: block comparison, copies and log replay
/// write its files directly (what reprotect and failback always did).
public struct LocalOriginalSite: OriginalSite {
    public let directory: String
    public var location: String { directory }
    public var localDirectory: String? { directory }

    public init(directory: String) { self.directory = directory }

    public func sync(disk: String, from source: String, blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> BlockSync.Report {
        try BlockSync(blockSize: blockSize).sync(from: source, to: try DiskEntries.pathForWriting(disk, in: directory), progress: progress)
    }

    public func copy(disk: String, from source: String, progress: ((Int64, Int64) -> Void)?) throws -> Int64 {
        try SparseCopy.copy(from: source, to: try DiskEntries.pathForWriting(disk, in: directory), progress: progress)
    }

    public func apply(disk: String, logs: [LogScan]) throws -> Int64 {
        Int64(try LogApplier(scans: logs).apply(to: DiskEntries.pathForWriting(disk, in: directory)).dataBytes)
    }

    public func removeSourceLogs(of disks: [String]) throws {
        for log in try SourceLogs.list(in: directory, of: disks) { try FileSystem.remove(log) }
    }

    public func size(of disk: String) throws -> Int64 { Int64(try FileSystem.stat(directory + "/" + disk).st_size) }
}
