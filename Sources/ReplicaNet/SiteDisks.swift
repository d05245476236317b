import Foundation
import ReplicaLog
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The original site's side of reprotect and failback across hosts (`serve --disks-dir`):
/// one disks directory, and nothing outside it. Every name is one plain entry of that
/// directory (no `/`, no leading `.`, so no `..`), and a disk that is a link is refused
/// unless it stays inside the directory (the rule of `DiskEntries`). Uploaded reverse logs wait
/// in `.replicafs/reverse-logs` until they are replayed onto their disk.
public final class SiteDisks: Sendable {
    public let directory: String
    /// What was taken in since the server started (`GET /v1/site/stats`).
    public let stats = SiteStats()
    var staging: String { directory + "/.replicafs/reverse-logs" }

    public init(directory: String) throws {
        guard FileSystem.isDirectory(directory) else { throw ReplicaError("--disks-dir \(directory): not a directory", code: .badRequest) }
        self.directory = try FileSystem.realPath(directory)
    }

    /// The path of disk or log `name`, refused (400) unless it is one entry of the directory.
    func path(_ name: String) throws -> String {
        guard ReceiverAPI.validName(name) else { throw ReplicaError("bad name \(name): one file of the disks directory", code: .badRequest) }
        return try DiskEntries.pathForWriting(name, in: directory)
    }

    /// The disk's size and the SHA-256 of each of its blocks (none for a disk not there yet).
    func digests(_ disk: String, blockSize: Int) throws -> (Int64, [UInt8]) {
        let p = try path(disk)
        guard FileSystem.exists(p) else { return (0, []) }
        let size = Int64(try FileSystem.stat(p).st_size)
        return (size, try BlockSync(blockSize: blockSize).checksums(of: p).flatMap { $0 })
    }

    /// Creates the disk if missing and sets its size.
    func setSize(_ disk: String, _ size: Int64) throws {
        let fd = try FileDescriptor.open(try path(disk), O_RDWR | O_CREAT, mode: 0o600)
        defer { fd.close() }
        if try fd.size() != size { try fd.truncate(to: size) }
    }

    func write(_ disk: String, offset: Int64, bytes: UnsafeRawBufferPointer) throws {
        let fd = try FileDescriptor.open(try path(disk), O_WRONLY)
        defer { fd.close() }
        if let base = bytes.baseAddress, bytes.count > 0 { try fd.pwrite(base, count: bytes.count, offset: offset) }
        stats.wroteDisk(bytes.count)
    }

    func sync(_ disk: String) throws {
        let fd = try FileDescriptor.open(try path(disk), O_RDONLY)
        defer { fd.close() }
        try fd.fsync()
    }

    func size(_ disk: String) throws -> Int64 { Int64(try FileSystem.stat(try path(disk)).st_size) }

    /// The durable size of a staged reverse log (0 when none was started): where its
    /// interrupted upload resumes.
    func logSize(_ name: String) throws -> Int64 {
        guard ReceiverAPI.validName(name) else { throw ReplicaError("bad log name \(name)", code: .badRequest) }
        return (try? FileSystem.stat(staging + "/" + name)).map { Int64($0.st_size) } ?? 0
    }

    /// Writes a chunk of an uploaded reverse log (offset 0 starts it afresh) and makes it
    /// durable; answers the new durable size, from which a cut upload resumes.
    func uploadLog(_ name: String, offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int64 {
        guard ReceiverAPI.validName(name) else { throw ReplicaError("bad log name \(name)", code: .badRequest) }
        try FileSystem.mkdirs(staging)
        let fd = try FileDescriptor.open(staging + "/" + name, O_WRONLY | O_CREAT | (offset == 0 ? O_TRUNC : 0), mode: 0o600)
        defer { fd.close() }
        guard try fd.size() == offset else { throw ReplicaError("log \(name): upload at \(offset) does not continue it", code: .badRequest) }
        if let base = bytes.baseAddress, bytes.count > 0 { try fd.pwrite(base, count: bytes.count, offset: offset) }
        try fd.fdatasync()
        stats.wroteLog(bytes.count)
        return offset + Int64(bytes.count)
    }

    /// Replays the uploaded logs `names` onto `disk` (chain and checksums checked, all or
    /// nothing refused before a byte is written), then removes them; the data bytes applied.
    func apply(_ disk: String, logs names: [String]) throws -> Int64 {
        let target = try path(disk)
        let paths = try names.map { name -> String in
            guard ReceiverAPI.validName(name) else { throw ReplicaError("bad log name \(name)", code: .badRequest) }
            return staging + "/" + name
        }
        let scans = try paths.map { try LogScanner.scan($0) }
        guard scans.allSatisfy(\.isSealed) else { throw ReplicaError("an uploaded log is not sealed (cut short?)", code: .badRequest) }
        let result = try LogApplier(scans: scans).apply(to: target)
        for p in paths {
            stats.appliedLog(size: Int64((try? FileSystem.stat(p).st_size) ?? 0))
            try FileSystem.remove(p)
        }
        return Int64(result.dataBytes)
    }

    /// Removes the change logs a source left beside `disk`.
    func removeSourceLogs(_ disk: String) throws {
        _ = try path(disk)
        for log in try SourceLogs.list(in: directory, of: [disk]) { try FileSystem.remove(log) }
    }
}
