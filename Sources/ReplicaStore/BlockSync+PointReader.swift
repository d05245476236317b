import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Block comparison against any store's `PointReader` (an object store's point, read by range
/// from its bucket), so a store outside this module resyncs, verifies and rebases with the same
/// engine as `DirectoryStore` instead of a copy of it.
extension BlockSync {
    /// Differing ranges (block-aligned, merged) between a local file and a disk at a point; a
    /// size difference counts as a differing tail.
    public func diff(_ source: String, reader: any PointReader, progress: ((Progress) -> Void)? = nil) throws -> [Range<Int64>] {
        let fd = try FileDescriptor.open(source, O_RDONLY)
        defer { fd.close() }
        return try diff(fd, try fd.size(), ReaderSide(reader: reader), reader.size, progress: progress)
    }

    /// Walks `source` against the point read as if cut or grown to the source's size (zeros
    /// past its end) and hands each run of differing blocks to `body` (offset, the source's
    /// bytes, count); what a resync stores. Returns the report of the walk.
    public func forEachDifference(source: String, reader: any PointReader, progress: ((Progress) -> Void)? = nil,
                                  _ body: (_ offset: Int64, _ bytes: UnsafeRawPointer, _ count: Int) throws -> Void) throws -> Report {
        let started = Clock.nowNanos()
        let fd = try FileDescriptor.open(source, O_RDONLY)
        defer { fd.close() }
        let size = try fd.size()
        let result = try walk(fd, size, ReaderSide(reader: reader, zeroExtended: true), size, length: size,
                              progress: progress) { window in
            var sent: Int64 = 0
            try forEachRun(window.differing) { first, count in
                let at = first * blockSize
                let end = min((first + count) * blockSize, window.sourceCount)
                guard end > at else { return }
                try body(window.offset + Int64(at), window.source + at, end - at)
                sent += Int64(end - at)
            }
            return sent
        }
        return Report(blockSize: blockSize, blocks: blockCount(size), differingBlocks: result.differing,
                      bytesCompared: result.compared, bytesSent: result.sent,
                      seconds: Double(Clock.nowNanos() - started) / 1e9, sourceSize: size)
    }
}

/// A point reader as one side of a comparison; `zeroExtended` reads zeros past its size.
private struct ReaderSide: BlockReader {
    let reader: any PointReader
    var zeroExtended = false

    func readBlock(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        let n = zeroExtended ? count : Int(max(0, min(Int64(count), reader.size - offset)))
        let inside = Int(max(0, min(Int64(n), reader.size - offset)))
        if inside > 0 { try reader.read(into: buffer, count: inside, offset: offset) }
        if n > inside { memset(buffer + inside, 0, n - inside) }
        return n
    }

    var file: FileDescriptor? { nil }
}
