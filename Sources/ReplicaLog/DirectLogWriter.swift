import CLinux
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Writes a whole HRL log front to back with O_DIRECT from an aligned buffer, bypassing the
/// page cache: for logs written once and read rarely (the target's redo logs: shipped logs
/// stored at commit, a resync's or a rebase's blocks). Filling fresh page-cache pages was the
/// largest cost of a commit on this machine class. Falls back to buffered writes where the
/// filesystem refuses O_DIRECT (tmpfs).
public final class DirectLogWriter {
    static let block = 4096
    static let capacity = 8 << 20
    public static let maxData = 1 << 20

    public let path: String
    private let fd: FileDescriptor
    private let buffer: UnsafeMutableRawPointer
    /// Bytes in the buffer not yet written; the buffer starts at file offset `flushed`.
    private var used = 0
    private var flushed: Int64 = 0
    private var nextLSN: UInt64
    private var records: UInt64 = 0
    private var dataBytes: UInt64 = 0

    public init(path: String, header: LogHeader) throws {
        self.path = path
        fd = try Self.create(path)
        buffer = .allocate(byteCount: Self.capacity + Self.block, alignment: Self.block)
        nextLSN = header.firstLSN
        let bytes = header.encode()
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        used = bytes.count
    }

    deinit {
        fd.close()
        buffer.deallocate()
    }

    /// Creates `path` (it must not exist) for direct writes where the filesystem allows them.
    private static func create(_ path: String) throws -> FileDescriptor {
        do {
            return try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | RFS_O_DIRECT, mode: 0o600)
        } catch let e as SystemError where e.errno == EINVAL {
            return try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        }
    }

    /// Copies the file at `source` to a new file `destination` with direct writes straight from
    /// a read-only mapping of the source (no copy through a buffer) and makes it durable: how a
    /// commit stores a shipped log, written once.
    public static func copy(_ source: String, to destination: String) throws {
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let size = Int(try src.size())
        let dst = try create(destination)
        defer { dst.close() }
        guard size > 0 else { return try dst.fsync() }
        // The mapping covers whole pages, so the last block can be written padded (the bytes past
        // the end read as zeros) and the file cut to its size afterwards.
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, src.rawValue, 0), map != MAP_FAILED else {
            throw SystemError.current("mmap", source)
        }
        defer { munmap(map, size) }
        _ = madvise(map, size, MADV_SEQUENTIAL)
        var at = 0
        while at < size {
            let n = min(capacity, size - at)
            try dst.pwrite(map + at, count: (n + block - 1) / block * block, offset: Int64(at))
            at += n
        }
        try dst.truncate(to: Int64(size))
        try dst.fsync()
    }

    /// Appends a write record whose data is read from `source` at `offset` straight into the buffer.
    /// Returns the bytes read (short only at the source's end).
    public func appendWrite(from source: FileDescriptor, offset: Int64, count: Int) throws -> Int {
        precondition(count <= Self.maxData)
        try makeRoom(RecordHeader.size + count)
        let n = try source.pread(into: buffer + used + RecordHeader.size, count: count, offset: offset)
        guard n > 0 else { return 0 }
        finishWrite(count: n, offset: offset)
        return n
    }

    /// Appends a write record of `count` bytes at `bytes` (at most `maxData`).
    public func appendWrite(_ bytes: UnsafeRawPointer, count: Int, offset: Int64) throws {
        precondition(count <= Self.maxData)
        try makeRoom(RecordHeader.size + count)
        (buffer + used + RecordHeader.size).copyMemory(from: bytes, byteCount: count)
        finishWrite(count: count, offset: offset)
    }

    /// Completes a write record whose `count` data bytes are already in the buffer.
    private func finishWrite(count: Int, offset: Int64) {
        let data = UnsafeRawBufferPointer(start: buffer + used + RecordHeader.size, count: count)
        finishRecord(type: .write, offset: UInt64(offset), extent: UInt64(count), dataLength: count, crc: Checksum.crc32c(data))
        dataBytes += UInt64(count)
    }

    public func appendSetSize(_ size: UInt64) throws {
        try makeRoom(RecordHeader.size)
        finishRecord(type: .setSize, offset: size, extent: 0, dataLength: 0, crc: 0)
    }

    /// Appends the seal, writes the rest, cuts the padding off and makes the log durable.
    public func seal(reason: Seal.Reason, cutID: UInt64) throws {
        let payload = Seal(reason: reason, cutID: cutID, recordCount: records, dataBytes: dataBytes, timeNanos: Clock.nowNanos()).encode()
        try makeRoom(RecordHeader.size + payload.count)
        payload.withUnsafeBytes { (buffer + used + RecordHeader.size).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        let crc = Checksum.crc32c(UnsafeRawBufferPointer(start: buffer + used + RecordHeader.size, count: payload.count))
        finishRecord(type: .seal, offset: 0, extent: 0, dataLength: payload.count, crc: crc)
        let length = flushed + Int64(used)
        let padded = (used + Self.block - 1) / Self.block * Self.block
        memset(buffer + used, 0, padded - used)
        try fd.pwrite(buffer, count: padded, offset: flushed)
        try fd.truncate(to: length)
        try fd.fsync()
    }

    private func finishRecord(type: RecordType, offset: UInt64, extent: UInt64, dataLength: Int, crc: UInt32) {
        RecordHeader(type: type, lsn: nextLSN, offset: offset, extent: extent, dataLength: UInt32(dataLength), dataCRC: crc)
            .encode(into: UnsafeMutableRawBufferPointer(start: buffer + used, count: RecordHeader.size))
        used += RecordHeader.size + dataLength
        nextLSN += 1
        if type != .seal { records += 1 }
    }

    /// Writes the whole blocks of the buffer when `bytes` more would not fit.
    private func makeRoom(_ bytes: Int) throws {
        guard used + bytes > Self.capacity else { return }
        let whole = used / Self.block * Self.block
        try fd.pwrite(buffer, count: whole, offset: flushed)
        flushed += Int64(whole)
        memmove(buffer, buffer + whole, used - whole)
        used -= whole
    }
}
