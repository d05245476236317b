import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A failed-over disk's change log once it is reprotected: every change after reverse
/// replication's cut, in HRL form (`<disk>.NNNNNN.hrl` in the failover's `reverse/`
/// directory), so the original site is kept in sync by replaying sealed logs instead of
/// comparing whole disks. Calls come with the disk's lock held.
public final class ReverseLog {
    public let directory: String
    public let disk: String
    private var log: ChangeLog

    /// Starts a new chain (sequence 1, LSN 1) for a disk of `size` bytes.
    public init(directory: String, disk: String, size: Int64) throws {
        self.directory = directory
        self.disk = disk
        let chain = LogHeader.newChainID()
        log = try ChangeLog.create(path: directory + "/" + LogName.make(image: disk, sequence: 1), header: LogHeader(
            imageName: disk, chainID: chain, sequence: 1, firstLSN: 1, createdNanos: Clock.nowNanos(), imageSize: UInt64(max(0, size))))
        try log.sync()
    }

    public func write(_ data: UnsafeRawBufferPointer, offset: Int64) throws {
        try log.appendWrite(data, offset: UInt64(offset), dataCRC: Checksum.crc32c(data))
    }

    public func setSize(_ size: Int64) throws { try log.appendSetSize(UInt64(size)) }

    public func zero(_ offset: Int64, _ length: Int64) throws {
        guard length > 0 else { return }
        try log.appendZero(offset: UInt64(offset), length: UInt64(length))
    }

    public func sync() throws { try log.sync() }

    /// Seals the current log and opens the next; returns the sealed log's path.
    public func rotate(size: Int64) throws -> String {
        let old = log
        try old.seal(reason: .rotation, cutID: 0)
        try old.sync()
        try old.markReadOnly()
        log = try ChangeLog.create(path: directory + "/" + LogName.make(image: disk, sequence: old.header.sequence + 1), header: LogHeader(
            imageName: disk, chainID: old.header.chainID, sequence: old.header.sequence + 1, firstLSN: old.nextLSN,
            createdNanos: Clock.nowNanos(), imageSize: UInt64(max(0, size))))
        try log.sync()
        return old.path
    }
}
