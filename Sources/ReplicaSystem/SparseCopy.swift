import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Copies a file's data regions only (SEEK_DATA/SEEK_HOLE), so holes in sparse images are
/// neither read nor written; the copy has the source's size and bytes.
public enum SparseCopy {
    /// Returns the number of data bytes copied.
    @discardableResult
    /// `resumeAt` continues an interrupted copy from that offset (the destination is kept);
    /// `progress` gets the bytes copied by each chunk and the offset reached.
    public static func copy(from source: String, to destination: String, resumeAt: Int64 = 0,
                            progress: ((Int64, Int64) -> Void)? = nil) throws -> Int64 {
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let dst = try FileDescriptor.open(destination, O_WRONLY | O_CREAT | (resumeAt == 0 ? O_TRUNC : 0), mode: 0o600)
        defer { dst.close() }
        let size = try src.size()
        try dst.truncate(to: size)
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var copied: Int64 = 0
        var at: Int64 = resumeAt
        while at < size {
            let dataStart: Int64
            do { dataStart = try src.lseek(at, whence: RFS_SEEK_DATA) } catch let e as SystemError where e.errno == ENXIO { break }
            let dataEnd = min(size, (try? src.lseek(dataStart, whence: RFS_SEEK_HOLE)) ?? size)
            var pos = dataStart
            while pos < dataEnd {
                let n = Int(min(Int64(chunk), dataEnd - pos))
                let got = try src.pread(into: buffer, count: n, offset: pos)
                guard got > 0 else { break }
                try dst.pwrite(buffer, count: got, offset: pos)
                pos += Int64(got)
                copied += Int64(got)
                progress?(Int64(got), pos)
            }
            at = dataEnd
        }
        try dst.fsync()
        return copied
    }
}
