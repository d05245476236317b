import Crypto
import Foundation
import Testing
@testable import ReplicaStore
import ReplicaSystem

/// Encryption at rest per chunk: a round trip gives the bytes back; a changed byte, a chunk
/// moved to another index or object, a cut object and another key are each refused.
@Suite(.timeLimit(.minutes(1)))
struct ChunkCipherTests {
    let dir: String

    init() throws {
        dir = "/tmp/net-tls-cipher-\(UUID().uuidString.prefix(8))"
        try FileSystem.mkdirs(dir)
    }

    func keyFile(_ name: String, bytes: [UInt8]? = nil, mode: mode_t = 0o600) throws -> String {
        let path = dir + "/" + name
        var key = bytes ?? (0..<32).map { _ in UInt8.random(in: 0...255) }
        try key.withUnsafeMutableBytes { try FileSystem.writeAtomically(path, UnsafeRawBufferPointer($0), mode: mode) }
        return path
    }

    func chunks(_ count: Int, size: Int = 4096) -> [[UInt8]] {
        (0..<count).map { i in (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) } }
    }

    /// The error `body` threw, as text; "" and a recorded issue when it threw none.
    func thrown(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            Issue.record("no error thrown")
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func roundTripGivesTheBytesBack() throws {
        defer { try? FileSystem.removeTree(dir) }
        let cipher = try ChunkCipher(keyFile: try keyFile("key"))
        let plain = chunks(3) + [[]]
        for (i, chunk) in plain.enumerated() {
            let sealed = try cipher.seal(chunk, object: "vm1/base.img", index: UInt64(i), last: i == plain.count - 1)
            #expect(sealed.count == chunk.count + ChunkCipher.overhead)
            // Encrypted: the plaintext does not appear in the sealed chunk.
            if !chunk.isEmpty { #expect(Array(sealed[21..<(21 + chunk.count)]) != chunk) }
            #expect(try cipher.open(sealed, object: "vm1/base.img", index: UInt64(i), last: i == plain.count - 1) == chunk)
        }
        // Same plaintext twice: different nonces, different bytes.
        #expect(try cipher.seal(plain[0], object: "o", index: 0, last: true) != cipher.seal(plain[0], object: "o", index: 0, last: true))
    }

    @Test func changedByteIsRefused() throws {
        defer { try? FileSystem.removeTree(dir) }
        let cipher = try ChunkCipher(keyFile: try keyFile("key"))
        let sealed = try cipher.seal(chunks(1)[0], object: "log", index: 7, last: false)
        for position in [9, 21, 21 + 2000, sealed.count - 1] {  // nonce, ciphertext, tag
            var tampered = sealed
            tampered[position] ^= 0x01
            #expect(thrown { try cipher.open(tampered, object: "log", index: 7, last: false) }.contains("failed authentication"))
        }
        #expect(thrown { try cipher.open(Array(sealed.dropLast(1)), object: "log", index: 7, last: false) }.contains("failed authentication"))
        #expect(thrown { try cipher.open(Array(sealed.prefix(20)), object: "log", index: 7, last: false) }.contains("truncated"))
    }

    @Test func swappedOrMissingChunksAreRefused() throws {
        defer { try? FileSystem.removeTree(dir) }
        let cipher = try ChunkCipher(keyFile: try keyFile("key"))
        let plain = chunks(3)
        let sealed = try plain.enumerated().map { try cipher.seal($1, object: "a.img", index: UInt64($0), last: $0 == 2) }
        // Chunk 1 read in place of chunk 0 (swapped), chunk 0 of another object, the last chunk missing.
        #expect(thrown { try cipher.open(sealed[1], object: "a.img", index: 0, last: false) }.contains("not chunk 0"))
        #expect(thrown { try cipher.open(sealed[0], object: "b.img", index: 0, last: false) }.contains("failed authentication"))
        #expect(thrown { try cipher.open(sealed[1], object: "a.img", index: 1, last: true) }.contains("failed authentication"))
        #expect(try cipher.open(sealed[2], object: "a.img", index: 2, last: true) == plain[2])
    }

    @Test func wrongKeyIsRefused() throws {
        defer { try? FileSystem.removeTree(dir) }
        let right = try ChunkCipher(keyFile: try keyFile("right"))
        let wrong = try ChunkCipher(keyFile: try keyFile("wrong"))
        let sealed = try right.seal(chunks(1)[0], object: "o", index: 0, last: true)
        #expect(thrown { try wrong.open(sealed, object: "o", index: 0, last: true) }.contains("another key"))
        // A key id forged to match does not help: the tag still fails.
        var forged = sealed
        forged.replaceSubrange(1..<9, with: wrong.keyID)
        #expect(thrown { try wrong.open(forged, object: "o", index: 0, last: true) }.contains("failed authentication"))
    }

    @Test func badKeyFilesAreRefused() throws {
        defer { try? FileSystem.removeTree(dir) }
        let short = thrown { try ChunkCipher(keyFile: try keyFile("short", bytes: Array(repeating: 1, count: 16))) }
        #expect(short.contains("holds 16 bytes, not 32") && short.contains("head -c 32 /dev/urandom"), "\(short)")
        #expect(thrown { try ChunkCipher(keyFile: try keyFile("open", mode: 0o644)) }.contains("readable by others"))
        #expect(throws: SystemError.self) { try ChunkCipher(keyFile: dir + "/missing") }
    }
}
