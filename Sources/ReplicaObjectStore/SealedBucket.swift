import Crypto
import Foundation
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Client-side encryption of any `ObjectBucket`: every object is stored as consecutive chunks
/// sealed by `ChunkCipher` (AES-256-GCM), so the bucket (and whoever reads it) holds only
/// ciphertext and the key never leaves this host. Callers see plaintext: keys, sizes and bytes
/// as they put them; only the ETags are the inner bucket's (of the sealed bytes), which is
/// what conditional puts (`PutCondition`, passed through) compare.
///
/// Stored object: chunks of `chunkSize` plaintext bytes (the last shorter; an empty object is
/// one empty chunk, so a stored object of 0 bytes is never valid), each `ChunkCipher.overhead`
/// (37) bytes longer when sealed. Chunk *i* is sealed with the object's key as the object name,
/// index *i*, and `last` on the final chunk, so a changed byte, a chunk moved to another
/// position or object, and an object cut short (at a chunk boundary too: the chunk read as
/// last was not sealed as last) each fail authentication and are refused, never returned.
/// The plaintext size follows from the stored size, so `head` and `list` need no extra data.
///
/// A range read fetches only the sealed chunks covering the range, in one ranged GET that asks
/// for one byte more: whether that byte comes tells whether the last chunk fetched is the
/// object's final one (opened with `last`), without a HEAD.
///
/// `upload` seals the source into a file in `stagingDirectory` (mode 0600, removed afterwards)
/// and uploads it in parts that are whole multiples of the sealed chunk size. A multipart
/// upload resumed after a failure keeps the stored parts whose MD5 equals the new sealing's;
/// since nonces are random per chunk, a new sealing of the same bytes differs, so in practice
/// its parts are sent again. Were parts of two sealings mixed, the object would still be
/// valid: every chunk is sealed on its own (key, object name, index, last), so whole chunks of
/// either sealing open to the same plaintext, and part boundaries never split a chunk.
///
/// The bucket checks what it stored (the inner ETag against the MD5 of the sealed bytes, else
/// by reading the sealed object back), since a caller can no longer compare the ETag with its
/// plaintext. Failures of authentication are `.nonRecoverable` one-line `ReplicaError`s naming
/// the key and the chunk; an object sealed with another key says "another key".
public final class SealedBucket: ObjectBucket {
    public let inner: any ObjectBucket
    public let cipher: ChunkCipher
    /// Plaintext bytes per sealed chunk.
    public let chunkSize: Int
    /// Where `upload` writes the sealed copy of a source before sending it.
    public let stagingDirectory: String

    public init(_ inner: any ObjectBucket, cipher: ChunkCipher, chunkSize: Int = 1 << 20, stagingDirectory: String) {
        precondition(chunkSize > 0, "sealed chunk size must be positive")
        self.inner = inner
        self.cipher = cipher
        self.chunkSize = chunkSize
        self.stagingDirectory = stagingDirectory
    }

    public var location: String { inner.location + " (encrypted)" }

    /// Bytes of one full sealed chunk.
    public var sealedChunkSize: Int { chunkSize + ChunkCipher.overhead }

    /// The stored size of an object of `plaintext` bytes.
    public func sealedSize(ofPlaintext plaintext: Int64) -> Int64 {
        let chunks = max(1, (plaintext + Int64(chunkSize) - 1) / Int64(chunkSize))
        return plaintext + chunks * Int64(ChunkCipher.overhead)
    }

    /// The plaintext size of an object stored in `stored` bytes; nil when no sealing gives that
    /// size (the object was cut short, or was not written through a sealed bucket).
    public func plaintextSize(ofStored stored: Int64) -> Int64? {
        let sc = Int64(sealedChunkSize), overhead = Int64(ChunkCipher.overhead)
        guard stored >= overhead else { return nil }
        let chunks = (stored + sc - 1) / sc
        let lastChunk = stored - (chunks - 1) * sc
        // Only an empty object ends in an empty chunk.
        guard lastChunk >= overhead, chunks == 1 || lastChunk > overhead else { return nil }
        return stored - chunks * overhead
    }

    // MARK: writing

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        var sealed: [UInt8] = []
        sealed.reserveCapacity(Int(sealedSize(ofPlaintext: Int64(bytes.count))))
        var index: UInt64 = 0
        var at = 0
        repeat {
            let n = min(chunkSize, bytes.count - at)
            sealed += try cipher.seal(Array(bytes[at..<(at + n)]), object: key, index: index, last: at + n == bytes.count)
            at += n
            index += 1
        } while at < bytes.count
        let etag = try inner.put(key, sealed, condition: condition)
        if ObjectDigest.plainETag(etag) != ObjectDigest.hex(Insecure.MD5.hash(data: sealed)) {
            guard try inner.get(key, range: nil) == sealed else {
                throw ReplicaError("\(key) in \(location): the bucket stored other bytes than were sent (ETag \(etag))", kind: .recoverable)
            }
        }
        return etag
    }

    @discardableResult
    public func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        let size = try source.size()
        let sealedTotal = sealedSize(ofPlaintext: size)
        let sealedPart = sealedPartSize(forPlaintextPart: partSize, sealedTotal: sealedTotal)
        try FileSystem.mkdirs(stagingDirectory, mode: 0o700)
        let path = stagingDirectory + "/sealed-\(UUID().uuidString).tmp"
        let fd = try FileSystem.createExclusive(path, mode: 0o600)
        defer {
            fd.close()
            try? FileSystem.remove(path)
        }

        // Seal chunk by chunk into the staging file, hashing as S3 will: the whole object's MD5
        // (one PUT) and each part's (multipart ETag).
        var whole = Insecure.MD5()
        var part = Insecure.MD5()
        var partDigests: [UInt8] = []
        var partFill = 0
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var index: UInt64 = 0
        var at: Int64 = 0
        var written: Int64 = 0
        repeat {
            let n = Int(min(Int64(chunkSize), size - at))
            let got = try buffer.withUnsafeMutableBytes { try source.read(into: $0.baseAddress!, count: n, offset: at) }
            guard got == n else {
                throw ReplicaError("\(source.localPath) shrank while it was sealed for \(key) (\(at + Int64(got)) of \(size) bytes)", kind: .recoverable)
            }
            let sealed = try cipher.seal(Array(buffer[0..<n]), object: key, index: index, last: at + Int64(n) == size)
            try sealed.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: written) }
            whole.update(data: sealed)
            part.update(data: sealed)
            partFill += sealed.count
            if partFill == sealedPart {
                partDigests += Array(part.finalize())
                part = Insecure.MD5()
                partFill = 0
            }
            written += Int64(sealed.count)
            at += Int64(n)
            index += 1
        } while at < size
        if partFill > 0 { partDigests += Array(part.finalize()) }
        precondition(written == sealedTotal)

        let report = progress.map { report in { (sent: Int64) in report(sealedTotal == 0 ? 0 : sent * size / sealedTotal) } }
        let etag = try inner.upload(key, from: SourceFile(path), partSize: sealedPart, progress: report)
        let expected: Set<String> = [ObjectDigest.hex(whole.finalize()),
                                     ObjectDigest.hex(Insecure.MD5.hash(data: partDigests)) + "-\(partDigests.count / 16)"]
        if !expected.contains(ObjectDigest.plainETag(etag)) {
            try checkByReading(key, staged: fd, size: sealedTotal)
        }
        return etag
    }

    /// The part size for the inner upload: a whole number of sealed chunks, at least S3's
    /// minimum part, doubled (as S3Bucket would) until there are at most S3's maximum parts.
    func sealedPartSize(forPlaintextPart partSize: Int, sealedTotal: Int64) -> Int {
        let sc = sealedChunkSize
        var chunks = max((partSize + chunkSize - 1) / chunkSize, (S3Bucket.minimumPartSize + sc - 1) / sc, 1)
        while (sealedTotal + Int64(chunks * sc) - 1) / Int64(chunks * sc) > Int64(S3Bucket.maximumParts) { chunks *= 2 }
        return chunks * sc
    }

    /// Compares the stored sealed object with the staged one by SHA-256, read back in pieces.
    private func checkByReading(_ key: String, staged: FileDescriptor, size: Int64) throws {
        var local = SHA256Stream(), remote = SHA256Stream()
        var buffer = [UInt8](repeating: 0, count: 16 << 20)
        var at: Int64 = 0
        while at < size {
            let n = Int(min(Int64(buffer.count), size - at))
            try buffer.withUnsafeMutableBytes { _ = try staged.pread(into: $0.baseAddress!, count: n, offset: at) }
            local.update(Array(buffer[0..<n]))
            guard let piece = try inner.get(key, range: at..<(at + Int64(n))), piece.count == n else {
                throw ReplicaError("\(key) in \(location): stored object is shorter than the \(size) sealed bytes sent", kind: .recoverable)
            }
            remote.update(piece)
            at += Int64(n)
        }
        guard local.finalize() == remote.finalize() else {
            throw ReplicaError("\(key) in \(location): stored object differs from the sealed bytes sent", kind: .recoverable)
        }
    }

    // MARK: reading

    public func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? {
        guard let range else {
            guard let stored = try inner.get(key, range: nil) else { return nil }
            return try open(stored[...], key: key, firstIndex: 0, endsObject: true)
        }
        if range.isEmpty || range.lowerBound < 0 { return try inner.head(key) == nil ? nil : [] }
        let c = Int64(chunkSize), sc = Int64(sealedChunkSize)
        let first = range.lowerBound / c, last = (range.upperBound - 1) / c
        let want = (last - first + 1) * sc
        // One byte past the chunks: present when the object goes on after them.
        guard let stored = try inner.get(key, range: (first * sc)..<(first * sc + want + 1)) else { return nil }
        if stored.isEmpty {
            // The range starts at or past the end, or the object was cut before it.
            guard let info = try inner.head(key) else { return nil }
            guard plaintextSize(ofStored: info.size) != nil else { throw truncated(key, stored: info.size) }
            return []
        }
        guard Int64(stored.count) <= want + 1 else {
            throw ReplicaError("\(key) in \(location): a ranged GET of \(want + 1) bytes returned \(stored.count)", kind: .nonRecoverable)
        }
        let endsObject = Int64(stored.count) <= want
        let plain = try open(endsObject ? stored[...] : stored.dropLast(), key: key, firstIndex: UInt64(first), endsObject: endsObject)
        let lo = Int(range.lowerBound - first * c), hi = min(plain.count, Int(range.upperBound - first * c))
        return lo < hi ? Array(plain[lo..<hi]) : []
    }

    /// Opens consecutive sealed chunks starting at chunk `firstIndex`; with `endsObject`, the
    /// last of them (possibly shorter) is the object's final chunk.
    private func open(_ sealed: ArraySlice<UInt8>, key: String, firstIndex: UInt64, endsObject: Bool) throws -> [UInt8] {
        guard !sealed.isEmpty else {
            throw ReplicaError("chunk \(firstIndex) of \(key) in \(location) is missing: the object is truncated (or empty, which no sealed object is)",
                               kind: .nonRecoverable)
        }
        var plain: [UInt8] = []
        plain.reserveCapacity(sealed.count)
        var at = sealed.startIndex
        var index = firstIndex
        while at < sealed.endIndex {
            let end = min(at + sealedChunkSize, sealed.endIndex)
            do {
                plain += try cipher.open(Array(sealed[at..<end]), object: key, index: index, last: endsObject && end == sealed.endIndex)
            } catch let error as ReplicaError {
                throw ReplicaError("\(error.description) (in \(location))", kind: .nonRecoverable, code: error.code)
            }
            at = end
            index += 1
        }
        return plain
    }

    public func head(_ key: String) throws -> ObjectInfo? {
        guard var info = try inner.head(key) else { return nil }
        guard let size = plaintextSize(ofStored: info.size) else { throw truncated(key, stored: info.size) }
        info.size = size
        return info
    }

    private func truncated(_ key: String, stored: Int64) -> ReplicaError {
        ReplicaError("\(key) in \(location): stored size \(stored) is no sealed object's (\(chunkSize)-byte chunks): truncated, or not written encrypted",
                     kind: .nonRecoverable)
    }

    /// Objects with plaintext sizes. One whose stored size no sealing gives (cut short) is
    /// listed with the plaintext of its whole chunks; reading it fails.
    public func list(prefix: String) throws -> [ObjectInfo] {
        try inner.list(prefix: prefix).map { info in
            var info = info
            let sc = Int64(sealedChunkSize)
            info.size = plaintextSize(ofStored: info.size) ?? (info.size / sc) * Int64(chunkSize)
            return info
        }
    }

    public func delete(_ key: String) throws { try inner.delete(key) }

    public func abortUploads(prefix: String) throws { try inner.abortUploads(prefix: prefix) }
}
