import CZlib
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// zlib compression of shipped logs: the file is cut into 4 MiB chunks, each stored as
/// `raw length u32, compressed length u32, deflate bytes` (little-endian). Chunks keep memory
/// bounded and let a receiver check each length before inflating it.
public enum ZlibFrames {
    static let chunk = 4 << 20

    /// Compresses `source` into `destination`; returns the bytes written.
    @discardableResult
    public static func compress(_ source: String, to destination: String, level: Int32 = 1) throws -> Int64 {
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let dst = try FileDescriptor.open(destination, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { dst.close() }
        var input = [UInt8](repeating: 0, count: chunk)
        var output = [UInt8](repeating: 0, count: Int(compressBound(UInt(chunk))) + 8)
        var readAt: Int64 = 0, writeAt: Int64 = 0
        while true {
            let n = try input.withUnsafeMutableBytes { try src.pread(into: $0.baseAddress!, count: chunk, offset: readAt) }
            if n == 0 { break }
            readAt += Int64(n)
            var outLen = UInt(output.count - 8)
            let rc = output.withUnsafeMutableBufferPointer { out in
                input.withUnsafeBufferPointer { inp in
                    compress2(out.baseAddress! + 8, &outLen, inp.baseAddress!, UInt(n), level)
                }
            }
            guard rc == Z_OK else { throw ReplicaError("zlib compress failed (\(rc)) for \(source)") }
            withUnsafeBytes(of: UInt32(n).littleEndian) { for i in 0..<4 { output[i] = $0[i] } }
            withUnsafeBytes(of: UInt32(outLen).littleEndian) { for i in 0..<4 { output[4 + i] = $0[i] } }
            try output.withUnsafeBytes { try dst.pwrite($0.baseAddress!, count: Int(outLen) + 8, offset: writeAt) }
            writeAt += Int64(outLen) + 8
        }
        try dst.fsync()
        return writeAt
    }

    /// Inflates a file written by `compress`; a damaged frame is refused with its offset.
    public static func decompress(_ source: String, to destination: String) throws {
        let bytes = try FileSystem.readFile(source)
        let dst = try FileDescriptor.open(destination, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        defer { dst.close() }
        var output = [UInt8](repeating: 0, count: chunk)
        var at = 0
        var writeAt: Int64 = 0
        while at < bytes.count {
            guard bytes.count - at >= 8 else { throw ReplicaError("\(source): truncated compressed frame at byte \(at)") }
            let raw = bytes.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
            let packed = bytes.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self))) }
            guard raw <= chunk, packed <= bytes.count - at - 8 else { throw ReplicaError("\(source): bad compressed frame at byte \(at)") }
            var outLen = UInt(raw)
            let rc = output.withUnsafeMutableBufferPointer { out in
                bytes.withUnsafeBufferPointer { inp in uncompress(out.baseAddress!, &outLen, inp.baseAddress! + at + 8, UInt(packed)) }
            }
            guard rc == Z_OK, Int(outLen) == raw else { throw ReplicaError("\(source): corrupt compressed frame at byte \(at)") }
            try output.withUnsafeBytes { try dst.pwrite($0.baseAddress!, count: raw, offset: writeAt) }
            writeAt += Int64(raw)
            at += 8 + packed
        }
        try dst.fsync()
    }
}

extension ZlibFrames {
    /// One buffer deflated (zlib format), what crosses the network for a compressed upload.
    public static func deflate(_ bytes: UnsafeRawBufferPointer, level: Int32 = 1) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(compressBound(UInt(bytes.count))))
        var outLen = UInt(output.count)
        let none: [UInt8] = [0]
        let rc = none.withUnsafeBufferPointer { empty in
            output.withUnsafeMutableBufferPointer { out in
                compress2(out.baseAddress!, &outLen, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? empty.baseAddress!,
                          UInt(bytes.count), level)
            }
        }
        guard rc == Z_OK else { throw ReplicaError("zlib compress failed (\(rc))") }
        output.removeSubrange(Int(outLen)...)
        return output
    }

    /// Inflates a buffer `deflate` made into exactly `rawLength` bytes (at most `limit`); a
    /// damaged or mislabelled buffer is refused.
    public static func inflate(_ bytes: UnsafeRawBufferPointer, rawLength: Int, limit: Int) throws -> [UInt8] {
        guard rawLength >= 0, rawLength <= limit else { throw ReplicaError("compressed chunk of \(rawLength) bytes exceeds \(limit)", code: .badRequest) }
        var output = [UInt8](repeating: 0, count: max(rawLength, 1))
        var outLen = UInt(rawLength)
        let none: [UInt8] = [0]
        let rc = none.withUnsafeBufferPointer { empty in
            output.withUnsafeMutableBufferPointer { out in
                uncompress(out.baseAddress!, &outLen, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? empty.baseAddress!, UInt(bytes.count))
            }
        }
        guard rc == Z_OK, Int(outLen) == rawLength else { throw ReplicaError("corrupt compressed chunk", code: .badRequest) }
        output.removeSubrange(rawLength...)
        return output
    }
}
