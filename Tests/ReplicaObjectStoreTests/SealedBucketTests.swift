import Crypto
import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaObjectStore
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Client-side encryption over the test bucket (`DirectoryBucket`): objects of every size
/// around the chunk size come back whole and by any range, the stored bytes hold no plaintext,
/// and a changed, cut or moved chunk or another key is refused with a clear error.
@Suite(.timeLimit(.minutes(2)))
struct SealedBucketTests {
    let dir: String
    let plainBucket: DirectoryBucket
    static let chunk = 4096

    init() throws {
        var template = Array("/tmp/s3-sealed-unit-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        plainBucket = try DirectoryBucket(root: dir + "/bucket")
    }

    func cleanup() { try? FileSystem.removeTree(dir) }

    func cipher(_ name: String = "key") throws -> ChunkCipher {
        let path = dir + "/" + name
        if !FileSystem.exists(path) {
            let key = (0..<32).map { _ in UInt8.random(in: 0...255) }
            try key.withUnsafeBytes { try FileSystem.writeAtomically(path, $0, mode: 0o600) }
        }
        return try ChunkCipher(keyFile: path)
    }

    func sealed(_ name: String = "key") throws -> SealedBucket {
        SealedBucket(plainBucket, cipher: try cipher(name), chunkSize: Self.chunk, stagingDirectory: dir + "/staging")
    }

    /// Bytes with a position-dependent pattern and the marker every 1000 bytes.
    static func plaintext(_ size: Int, seed: Int = 0) -> [UInt8] {
        var bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed &+ $0 >> 8) }
        let marker = Array(Self.marker.utf8)
        for at in stride(from: 0, to: size - marker.count, by: 1000) { bytes.replaceSubrange(at..<(at + marker.count), with: marker) }
        return bytes
    }
    static let marker = "PLAINTEXT-MARKER-7f3a"

    func thrown(_ body: () throws -> Any?) -> String {
        do {
            _ = try body()
            Issue.record("no error thrown")
            return ""
        } catch {
            return "\(error)"
        }
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, !needle.isEmpty else { return false }
        return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    static let sizes = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk, 5 * chunk + 123]

    @Test func roundTripOfEverySizeByPutAndUpload() throws {
        defer { cleanup() }
        let bucket = try sealed()
        for size in Self.sizes {
            let plain = Self.plaintext(size, seed: size)
            try bucket.put("put/\(size)", plain, condition: .none)
            let source = dir + "/source-\(size)"
            try Data(plain).write(to: URL(fileURLWithPath: source))
            // A part of 2 chunks: multipart in the directory bucket's ETag for the larger ones.
            try bucket.upload("upload/\(size)", from: SourceFile(source), partSize: 2 * Self.chunk, progress: nil)
            for key in ["put/\(size)", "upload/\(size)"] {
                #expect(try bucket.get(key, range: nil) == plain, "\(key)")
                #expect(try bucket.head(key)?.size == Int64(size), "\(key)")
                let stored = try #require(try plainBucket.head(key))
                #expect(stored.size == bucket.sealedSize(ofPlaintext: Int64(size)))
                #expect(bucket.plaintextSize(ofStored: stored.size) == Int64(size))
                #expect(try bucket.head(key)?.etag == stored.etag, "ETags are the inner bucket's")
            }
        }
        #expect(try bucket.list(prefix: "put/").map(\.size).sorted() == Self.sizes.map(Int64.init).sorted())
        #expect(try bucket.get("missing", range: nil) == nil)
        #expect(try bucket.get("missing", range: 0..<10) == nil)
        #expect(try bucket.head("missing") == nil)
        // The staging directory is left empty: sealed copies are removed after the upload.
        #expect(try FileSystem.list(dir + "/staging").isEmpty)
    }

    @Test func sealedPartsAreWholeChunks() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let part = bucket.sealedPartSize(forPlaintextPart: 16 << 20, sealedTotal: 1 << 30)
        #expect(part % bucket.sealedChunkSize == 0 && part >= 16 << 20)
        let small = bucket.sealedPartSize(forPlaintextPart: 1, sealedTotal: 100 << 20)
        #expect(small % bucket.sealedChunkSize == 0 && small >= S3Bucket.minimumPartSize)
        let huge = bucket.sealedPartSize(forPlaintextPart: 5 << 20, sealedTotal: 1 << 40)
        #expect(huge % bucket.sealedChunkSize == 0 && (1 << 40) / Int64(huge) < Int64(S3Bucket.maximumParts))
    }

    @Test func everyRangeReadEqualsThePlaintext() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let seed = TestSeed.make()
        var random = SplitMix64(seed: seed)
        for size in Self.sizes {
            let plain = Self.plaintext(size, seed: size)
            try bucket.put("o/\(size)", plain, condition: .none)
            var ranges: [Range<Int64>] = [0..<Int64(size) + 10, Int64(size)..<Int64(size) + 5]
            for _ in 0..<60 {
                let lo = Int64.random(in: 0...Int64(size + Self.chunk), using: &random)
                let length = Int64.random(in: 1...Int64(3 * Self.chunk), using: &random)
                ranges.append(lo..<(lo + length))
            }
            for boundary in stride(from: 0, through: size, by: Self.chunk) {
                ranges.append(Int64(max(0, boundary - 1))..<Int64(boundary + 1))
            }
            for range in ranges {
                let lo = Int(min(range.lowerBound, Int64(size))), hi = Int(min(range.upperBound, Int64(size)))
                let got = try bucket.get("o/\(size)", range: range)
                #expect(got == Array(plain[lo..<hi]), "size \(size) range \(range) (seed \(seed))")
            }
        }
    }

    @Test func storedBytesHoldNoPlaintext() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let plain = Self.plaintext(5 * Self.chunk + 123)
        try bucket.put("p", plain, condition: .none)
        let source = dir + "/source"
        try Data(plain).write(to: URL(fileURLWithPath: source))
        try bucket.upload("u", from: SourceFile(source), partSize: 0, progress: nil)
        let marker = Array(Self.marker.utf8)
        #expect(contains(plain, marker))
        for key in ["p", "u"] {
            #expect(!contains(try #require(try plainBucket.get(key, range: nil)), marker))
        }
    }

    @Test func conditionalPutsPassThrough() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let etag = try bucket.put("c", [1, 2, 3], condition: .ifAbsent)
        let refused = thrown { try bucket.put("c", [4], condition: .ifAbsent) }
        #expect(refused.contains("precondition failed"))
        try bucket.put("c", [5], condition: .ifMatch(ObjectDigest.plainETag(etag)))
        #expect(try bucket.get("c", range: nil) == [5])
        #expect(thrown { try bucket.put("c", [6], condition: .ifMatch(ObjectDigest.plainETag(etag))) }.contains("precondition failed"))
    }

    @Test func flippedByteIsRefused() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let plain = Self.plaintext(3 * Self.chunk + 10)
        try bucket.put("vms/a/log", plain, condition: .none)
        let path = plainBucket.path("vms/a/log")
        let stored = try FileSystem.readFile(path)
        // In chunk 1: the whole object and a range inside chunk 1 are refused, chunk 0 still reads.
        var changed = stored
        changed[bucket.sealedChunkSize + 100] ^= 0x20
        try changed.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
        let whole = thrown { try bucket.get("vms/a/log", range: nil) }
        #expect(whole.contains("chunk 1 of vms/a/log failed authentication"), "\(whole)")
        #expect(!whole.contains("\n"))
        #expect(thrown { try bucket.get("vms/a/log", range: Int64(Self.chunk + 5)..<Int64(Self.chunk + 6)) }.contains("chunk 1 of vms/a/log"))
        #expect(try bucket.get("vms/a/log", range: 0..<100) == Array(plain[0..<100]))
        do {
            _ = try bucket.get("vms/a/log", range: nil)
        } catch let error as ReplicaError {
            #expect(error.kind == .nonRecoverable)
        }
    }

    @Test func truncatedObjectIsRefused() throws {
        defer { cleanup() }
        let bucket = try sealed()
        let plain = Self.plaintext(3 * Self.chunk + 10)
        try bucket.put("t", plain, condition: .none)
        let path = plainBucket.path("t")
        let stored = try FileSystem.readFile(path)
        // Cut at a chunk boundary (a valid size: chunk 1 read as last), inside the last chunk,
        // inside its header, and to nothing.
        for cut in [2 * bucket.sealedChunkSize, stored.count - 5, 2 * bucket.sealedChunkSize + 10, 0] {
            try Array(stored[0..<cut]).withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
            let error = thrown { try bucket.get("t", range: nil) }
            #expect(error.contains("of t") && (error.contains("failed authentication") || error.contains("truncated")), "cut \(cut): \(error)")
            let tail = thrown { try bucket.get("t", range: Int64(Self.chunk + 1)..<Int64(3 * Self.chunk + 10)) }
            #expect(tail.contains("failed authentication") || tail.contains("truncated"), "cut \(cut): \(tail)")
        }
        // A size no sealing gives: head says so.
        try Array(stored[0..<(stored.count - 30)]).withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
        #expect(thrown { try bucket.head("t") }.contains("truncated"))
    }

    @Test func chunksSwappedBetweenPositionsOrObjectsAreRefused() throws {
        defer { cleanup() }
        let bucket = try sealed()
        try bucket.put("x", Self.plaintext(3 * Self.chunk, seed: 1), condition: .none)
        try bucket.put("y", Self.plaintext(3 * Self.chunk, seed: 2), condition: .none)
        let sc = bucket.sealedChunkSize
        let x = try FileSystem.readFile(plainBucket.path("x")), y = try FileSystem.readFile(plainBucket.path("y"))
        // Chunks 0 and 1 of x swapped.
        let swapped = Array(x[sc..<(2 * sc)] + x[0..<sc] + x[(2 * sc)...])
        try swapped.withUnsafeBytes { try FileSystem.writeAtomically(plainBucket.path("x"), $0) }
        #expect(thrown { try bucket.get("x", range: 0..<10) }.contains("not chunk 0 of x"))
        #expect(thrown { try bucket.get("x", range: nil) }.contains("chunk 0 of x failed authentication"))
        // Chunk 0 of y in x's place (same position, another object).
        let foreign = Array(y[0..<sc] + x[sc...])
        try foreign.withUnsafeBytes { try FileSystem.writeAtomically(plainBucket.path("x"), $0) }
        #expect(thrown { try bucket.get("x", range: 0..<10) }.contains("chunk 0 of x failed authentication"))
        // The whole object y stored under key x.
        try y.withUnsafeBytes { try FileSystem.writeAtomically(plainBucket.path("x"), $0) }
        #expect(thrown { try bucket.get("x", range: nil) }.contains("failed authentication"))
    }

    @Test func anotherKeyIsNamed() throws {
        defer { cleanup() }
        try sealed("right").put("k", Self.plaintext(Self.chunk + 1), condition: .none)
        let wrong = try sealed("wrong")
        let error = thrown { try wrong.get("k", range: nil) }
        #expect(error.contains("chunk 0 of k was encrypted with another key"), "\(error)")
        #expect(thrown { try wrong.get("k", range: Int64(Self.chunk)..<Int64(Self.chunk + 1)) }.contains("another key"))
    }
}
