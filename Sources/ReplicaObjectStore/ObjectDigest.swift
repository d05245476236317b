import Crypto
import Foundation

/// The digests the object store names and checks objects by: SHA-256 (chunk keys, every
/// reference in the catalog) and the MD5 ETag S3 computes from what it received, which a
/// commit compares with the bytes it verified instead of downloading them again.
enum ObjectDigest {
    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func sha256(_ bytes: UnsafeRawBufferPointer) -> String { hex(SHA256.hash(data: bytes)) }
    static func sha256(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { sha256($0) } }

    static func sha256Raw(_ hexText: String) -> [UInt8]? {
        let chars = Array(hexText.utf8)
        guard chars.count == 64 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = nibble(chars[2 * i]), let lo = nibble(chars[2 * i + 1]) else { return nil }
            out[i] = hi << 4 | lo
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }

    /// The ETags S3 gives an object of these bytes: one PUT (the MD5) and a multipart upload
    /// in parts of `partSize` (the MD5 of the parts' MD5s, "-" and the part count).
    static func expectedETags(_ bytes: UnsafeRawBufferPointer, partSize: Int) -> Set<String> {
        var tags: Set<String> = [hex(Insecure.MD5.hash(data: bytes))]
        guard partSize > 0, bytes.count > 0 else { return tags }
        var parts = [UInt8]()
        var count = 0
        var at = 0
        while at < bytes.count {
            let n = min(partSize, bytes.count - at)
            parts += Array(Insecure.MD5.hash(data: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])))
            at += n
            count += 1
        }
        tags.insert(hex(Insecure.MD5.hash(data: parts)) + "-\(count)")
        return tags
    }

    /// An ETag as a listing or a response gives it, without quotes.
    static func plainETag(_ etag: String) -> String { etag.replacingOccurrences(of: "\"", with: "").lowercased() }
}
