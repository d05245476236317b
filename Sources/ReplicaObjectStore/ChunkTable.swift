import ReplicaSystem

/// A disk's base as a list of chunks: per chunk the SHA-256 of its bytes (the chunk object's
/// name) or nil for a chunk that reads as zeros and is not stored. Kept as one binary object
/// per disk and base generation (32 bytes per chunk, all zero for a zero chunk), so a catalog
/// stays small however large the disk and a commit never rewrites it.
struct ChunkTable: Sendable, Equatable {
    var digests: [String?]

    init(digests: [String?] = []) { self.digests = digests }

    init(decoding bytes: [UInt8], key: String) throws {
        guard bytes.count % 32 == 0 else { throw ReplicaError("\(key): damaged chunk table (\(bytes.count) bytes)") }
        digests = stride(from: 0, to: bytes.count, by: 32).map { at in
            let d = bytes[at..<(at + 32)]
            return d.allSatisfy { $0 == 0 } ? nil : ObjectDigest.hex(d)
        }
    }

    func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(digests.count * 32)
        for d in digests { out += d.flatMap(ObjectDigest.sha256Raw) ?? [UInt8](repeating: 0, count: 32) }
        return out
    }

    /// Chunks needed for `size` bytes at `chunkSize` each.
    static func count(size: Int64, chunkSize: Int) -> Int { Int((size + Int64(chunkSize) - 1) / Int64(chunkSize)) }
}
