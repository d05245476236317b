import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

extension DirectLogWriter {
    /// Writes a sealed redo log that sets the size to `size` and then carries `ranges` of
    /// `source` (a resync's or a rebase's blocks, a store's next point); returns its data bytes.
    public static func writeRedo(_ ranges: [Range<Int64>], from source: String, size: Int64, to path: String,
                                 disk: String, pointID: Int) throws -> Int64 {
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let log = try DirectLogWriter(path: path, header: LogHeader(
            imageName: disk, chainID: [UInt8](repeating: 0, count: 16), sequence: UInt64(pointID), firstLSN: 1,
            createdNanos: Clock.nowNanos(), imageSize: UInt64(size)))
        try log.appendSetSize(UInt64(size))
        var written: Int64 = 0
        for r in ranges {
            var at = r.lowerBound
            let end = min(r.upperBound, size)
            while at < end {
                let n = try log.appendWrite(from: src, offset: at, count: Int(min(Int64(DirectLogWriter.maxData), end - at)))
                guard n > 0 else { break }
                at += Int64(n)
                written += Int64(n)
            }
        }
        try log.seal(reason: .rotation, cutID: UInt64(pointID))
        return written
    }
}
