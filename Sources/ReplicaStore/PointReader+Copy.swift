import ReplicaSystem

#if canImport(Glibc)
import Glibc
#endif

extension PointReader {
    /// Writes the disk as of this reader's point to a new file at `destination` (created or
    /// truncated, mode 0600) and syncs it. Chunks of zeros stay holes, so a sparse disk
    /// exports sparse. What `export` and a receiver's resync work copy share, whatever
    /// store the reader comes from.
    public func copy(to destination: String, chunkBytes: Int = 4 << 20,
                     progress: ((_ done: Int64, _ total: Int64) -> Void)? = nil) throws {
        let fd = try FileDescriptor.open(destination, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { fd.close() }
        try fd.truncate(to: size)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 4096)
        defer { buffer.deallocate() }
        var at: Int64 = 0
        while at < size {
            let n = Int(min(Int64(chunkBytes), size - at))
            try read(into: buffer, count: n, offset: at)
            if !ZeroBytes.all(buffer, n) { try fd.pwrite(buffer, count: n, offset: at) }
            at += Int64(n)
            progress?(at, size)
        }
        try fd.fsync()
    }
}
