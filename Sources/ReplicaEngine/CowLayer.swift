import CLinux
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The writable layer of a failed-over disk: a sparse file the disk's size that holds every
/// block written since the failover, and a bitmap of those blocks. The bitmap is saved (write,
/// fsync, rename) after the data is synced, at each fsync of the disk, so a crash keeps every
/// block an fsync acknowledged. Blocks are 4 KiB: the page size, so the kernel's writes
/// rarely need a read-modify-write.
// @unchecked: used only under its FailoverDisk's lock, on FUSE worker threads.
final class CowLayer: @unchecked Sendable {
    static let blockSize: Int64 = 4096
    static let magic: [UInt8] = Array("RFSCOW01".utf8)

    let data: FileDescriptor
    let mapPath: String
    private(set) var words: [UInt64]
    /// The disk's size as the failed-over VM sees it.
    public var size: Int64
    private(set) var dirty = false

    /// Opens (or creates, for a disk of `initialSize`) the layer kept at `path` + `.cow`/`.cowmap`.
    init(path: String, initialSize: Int64) throws {
        mapPath = path + ".cowmap"
        data = try FileDescriptor.open(path + ".cow", O_RDWR | O_CREAT, mode: 0o600)
        if let saved = try? FileSystem.readFile(mapPath) {
            guard let (size, words) = Self.decode(saved) else {
                data.close()
                throw ReplicaError("\(mapPath): damaged copy-on-write map")
            }
            self.size = size
            self.words = words
            // Bytes past the saved size were written after the last fsync and are not part of
            // the disk: cut them, or growing the disk later would show them instead of zeros.
            try data.truncate(to: size)
        } else {
            size = initialSize
            words = []
            try data.truncate(to: initialSize)
        }
        // The bitmap grows as blocks are written, so opening a 64 GiB disk costs what a 1 GiB one does.
    }

    deinit { data.close() }

    /// Blocks written since the failover.
    var writtenBlocks: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    func isWritten(_ block: Int64) -> Bool {
        let w = Int(block >> 6)
        return w < words.count && words[w] & (1 << UInt64(block & 63)) != 0
    }

    /// Marks blocks `first..<end` written.
    func mark(_ first: Int64, _ end: Int64) {
        guard first < end else { return }
        ensureCapacity(end * Self.blockSize)
        var b = first
        while b < end {
            if b & 63 == 0 && end - b >= 64 {
                words[Int(b >> 6)] = ~0
                b += 64
            } else {
                words[Int(b >> 6)] |= 1 << UInt64(b & 63)
                b += 1
            }
        }
        dirty = true
    }

    func sizeChanged() { dirty = true }

    private func ensureCapacity(_ bytes: Int64) {
        let blocks = (bytes + Self.blockSize - 1) / Self.blockSize
        let need = Int((blocks + 63) / 64)
        if need > words.count { words.append(contentsOf: repeatElement(0, count: need - words.count)) }
    }

    /// Makes the written blocks and the map durable.
    public func save() throws {
        try data.fdatasync()
        guard dirty else { return }
        let bytes = Self.encode(size: size, words: words)
        try bytes.withUnsafeBytes { try FileSystem.writeAtomically(mapPath, $0) }
        dirty = false
    }

    // Map file: magic (8), size u64, word count u64, words, CRC-32C of all before (u32). Little-endian.
    public static func encode(size: Int64, words: [UInt64]) -> [UInt8] {
        var out = magic
        out.reserveCapacity(28 + words.count * 8)
        func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        put(UInt64(size))
        put(UInt64(words.count))
        for w in words { put(w) }
        let crc = out.withUnsafeBytes { Checksum.crc32c($0) }
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))) }
        return out
    }

    public static func decode(_ bytes: [UInt8]) -> (Int64, [UInt64])? {
        guard bytes.count >= 28, Array(bytes[0..<8]) == magic else { return nil }
        func get(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        let count = Int(get(16))
        guard count >= 0, bytes.count == 28 + count * 8 else { return nil }
        let crc = bytes.withUnsafeBytes { Checksum.crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<(bytes.count - 4)])) }
        let stored = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[bytes.count - 4 + $1]) << (8 * UInt32($1)) }
        guard crc == stored else { return nil }
        return (Int64(get(8)), (0..<count).map { get(24 + $0 * 8) })
    }
}
