import CLinux

/// CRC-32C (Castagnoli) over byte ranges: the checksum of HRL headers and records. It runs on
/// the FUSE write path, so it uses the CPU's crc32 instruction where there is one (about 4x
/// zlib's CRC-32 on this machine class) and detects torn and bit-flipped records as well.
public enum Checksum {
    public static func crc32c(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return seed }
        return rfs_crc32c(seed, base, bytes.count)
    }

    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { crc32c($0) }
    }
}
