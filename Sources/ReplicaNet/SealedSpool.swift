import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A file the encrypted receiver stages between requests (a log arriving in resumable chunks,
/// a disk of an initial copy), kept sealed on disk: each acknowledged write is one segment
/// file, `<offset as 16 hex digits>`, holding the request's bytes sealed by `ChunkCipher`
/// with the spool's name and the offset as associated data (a segment moved to another offset
/// or file fails to open). A segment is written to a temporary file, fsynced and renamed, so
/// the durable size is the end of the last segment; a write at an offset below it (a resend)
/// drops what lies at or after that offset first. `materialize` decrypts the segments into a
/// `MemoryFile` for the store call that needs a file: the plaintext never reaches a disk.
struct SealedSpool {
    let directory: String
    /// Bound into every segment (with its offset): the VM and the staged file's name.
    let name: String
    let cipher: ChunkCipher

    struct Segment {
        var offset: Int64
        var length: Int64
        var file: String
    }

    static func segmentName(_ offset: Int64) -> String {
        let hex = String(UInt64(offset), radix: 16)
        return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }

    private func object(_ offset: Int64) -> String { name + "@" + String(offset) }

    /// The segments in offset order (temporary files a crash left are removed).
    func segments() throws -> [Segment] {
        guard FileSystem.exists(directory) else { return [] }
        var out: [Segment] = []
        for file in try FileSystem.list(directory) {
            let path = directory + "/" + file
            if file.hasPrefix(".") || file.hasSuffix(".tmp") {
                try? FileSystem.remove(path)
                continue
            }
            guard file.count == 16, let offset = UInt64(file, radix: 16), let st = try? FileSystem.stat(path),
                  Int64(st.st_size) >= Int64(ChunkCipher.overhead) else {
                throw ReplicaError("\(path): not a sealed segment of the receiver's staging", kind: .nonRecoverable)
            }
            out.append(Segment(offset: Int64(offset), length: Int64(st.st_size) - Int64(ChunkCipher.overhead), file: path))
        }
        return out.sorted { $0.offset < $1.offset }
    }

    /// The durable size: the end of the last segment (0 when none).
    func size() throws -> Int64 { try segments().last.map { $0.offset + $0.length } ?? 0 }

    /// Stores `bytes` at `offset` as a new segment after dropping what lies at or after
    /// `offset`; returns the new durable size.
    @discardableResult
    func write(offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int64 {
        try FileSystem.mkdirs(directory, mode: 0o700)
        for segment in try segments() where segment.offset + segment.length > offset {
            if segment.offset >= offset {
                try FileSystem.remove(segment.file)
            } else {
                // Straddles the offset: keep its part before it, sealed again.
                let plain = try open(segment)
                try store(Array(plain.prefix(Int(offset - segment.offset))), at: segment.offset)
            }
        }
        if bytes.count > 0 { try store(Array(bytes), at: offset) }
        try FileSystem.fsyncDirectory(directory)
        return max(offset + Int64(bytes.count), try size())
    }

    private func store(_ plain: [UInt8], at offset: Int64) throws {
        let sealed = try cipher.seal(plain, object: object(offset), index: 0, last: true)
        let path = directory + "/" + Self.segmentName(offset)
        try sealed.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }

    private func open(_ segment: Segment) throws -> [UInt8] {
        try cipher.open(try FileSystem.readFile(segment.file), object: object(segment.offset), index: 0, last: true)
    }

    /// The staged bytes decrypted into a memory file of `size` bytes (nil: the durable size);
    /// gaps between segments are holes.
    func materialize(size: Int64? = nil) throws -> MemoryFile {
        let file = try MemoryFile(name: name)
        let fd = file.descriptor
        for segment in try segments() {
            let plain = try open(segment)
            if !plain.isEmpty { try plain.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: segment.offset) } }
        }
        try fd.truncate(to: try size ?? self.size())
        return file
    }

    /// Removes the segments that end at or before `offset` (stored elsewhere now).
    func drop(before offset: Int64) throws {
        for segment in try segments() where segment.offset + segment.length <= offset { try FileSystem.remove(segment.file) }
    }

    /// Removes the spool.
    func remove() throws {
        if FileSystem.exists(directory) { try FileSystem.removeTree(directory) }
    }
}
