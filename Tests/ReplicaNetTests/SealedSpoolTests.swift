import Crypto
import Foundation
import Testing
@testable import ReplicaNet
@testable import ReplicaStore
@testable import ReplicaSystem

/// The encrypted receiver's sealed staging of a transfer: acknowledged writes come back
/// exactly (a resend below the durable size replaces what followed, gaps are holes), nothing
/// staged holds the plaintext, and a segment moved to another offset or read with another key
/// is refused, never returned.
@Suite(.timeLimit(.minutes(1)))
struct SealedSpoolTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/atrest-spool-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    static func cipher() throws -> ChunkCipher { try ChunkCipher(key: SymmetricKey(size: .bits256)) }

    static func bytes(_ count: Int, _ seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) ^ seed }
    }

    static func contents(_ file: MemoryFile) throws -> [UInt8] { try FileSystem.readFile(file.path) }

    @Test("writes come back exactly; a resend below the durable size replaces what followed; gaps read as zeros; no segment holds the plaintext")
    func roundTrip() throws {
        defer { cleanup() }
        let spool = SealedSpool(directory: dir + "/up", name: "vm/uploads/log1", cipher: try Self.cipher())
        #expect(try spool.size() == 0)
        var expected: [UInt8] = []
        for k in 0..<3 {
            let b = Self.bytes(10_000, UInt8(k))
            #expect(try b.withUnsafeBytes { try spool.write(offset: Int64(expected.count), bytes: $0) } == Int64(expected.count + b.count))
            expected += b
        }
        #expect(try spool.size() == 30_000 && spool.segments().count == 3)
        #expect(try Self.contents(try spool.materialize()) == expected)
        // A resend from inside the second segment: its head stays, the rest is the new bytes.
        let resend = Self.bytes(4_000, 0xAA)
        #expect(try resend.withUnsafeBytes { try spool.write(offset: 15_000, bytes: $0) } == 19_000)
        expected = Array(expected[0..<15_000]) + resend
        #expect(try Self.contents(try spool.materialize()) == expected)
        #expect(try spool.segments().map(\.offset) == [0, 10_000, 15_000])
        // No segment file holds a run of the plaintext.
        for segment in try spool.segments() {
            let stored = try FileSystem.readFile(segment.file)
            let probe = Array(expected[Int(segment.offset)..<Int(segment.offset) + 64])
            #expect(stored.count == Int(segment.length) + ChunkCipher.overhead)
            #expect(!(0...(stored.count - probe.count)).contains { Array(stored[$0..<($0 + probe.count)]) == probe })
        }
        // An initial copy: data ranges with holes between them, then the disk's size.
        let seed = SealedSpool(directory: dir + "/seed", name: "vm/seed/a.img", cipher: spool.cipher)
        try Self.bytes(4096, 1).withUnsafeBytes { _ = try seed.write(offset: 8192, bytes: $0) }
        try Self.bytes(4096, 2).withUnsafeBytes { _ = try seed.write(offset: 65536, bytes: $0) }
        let disk = try Self.contents(try seed.materialize(size: 100_000))
        #expect(disk.count == 100_000)
        #expect(disk[0..<8192].allSatisfy { $0 == 0 } && Array(disk[8192..<12288]) == Self.bytes(4096, 1))
        #expect(disk[12288..<65536].allSatisfy { $0 == 0 } && Array(disk[65536..<69632]) == Self.bytes(4096, 2))
        try spool.remove()
        #expect(!FileSystem.exists(dir + "/up"))
    }

    @Test("a segment moved to another offset, damaged, or opened with another key is refused; a crash's temporary files are dropped")
    func tamperingRefused() throws {
        defer { cleanup() }
        let cipher = try Self.cipher()
        let spool = SealedSpool(directory: dir + "/up", name: "vm/uploads/log1", cipher: cipher)
        try Self.bytes(1000, 1).withUnsafeBytes { _ = try spool.write(offset: 0, bytes: $0) }
        try Self.bytes(1000, 2).withUnsafeBytes { _ = try spool.write(offset: 1000, bytes: $0) }
        // Leftovers of a crash between write and rename are not segments.
        try FileSystem.writeFile(dir + "/up/" + SealedSpool.segmentName(2000) + ".tmp", "x")
        #expect(try spool.size() == 2000)
        #expect(!FileSystem.exists(dir + "/up/" + SealedSpool.segmentName(2000) + ".tmp"))
        let other = SealedSpool(directory: dir + "/up", name: "vm/uploads/log1", cipher: try Self.cipher())
        #expect(throws: ReplicaError.self) { try other.materialize() }
        let renamed = SealedSpool(directory: dir + "/up", name: "vm/uploads/log2", cipher: cipher)
        #expect(throws: ReplicaError.self) { try renamed.materialize() }
        // One byte changed in a segment.
        let first = dir + "/up/" + SealedSpool.segmentName(0)
        let good = try FileSystem.readFile(first)
        var bad = good
        bad[100] ^= 1
        try bad.withUnsafeBytes { try FileSystem.writeAtomically(first, $0) }
        #expect(throws: ReplicaError.self) { try spool.materialize() }
        try good.withUnsafeBytes { try FileSystem.writeAtomically(first, $0) }
        #expect(try Self.contents(try spool.materialize()) == Self.bytes(1000, 1) + Self.bytes(1000, 2))
        try FileSystem.rename(dir + "/up/" + SealedSpool.segmentName(1000), to: dir + "/up/" + SealedSpool.segmentName(1500))
        #expect(throws: ReplicaError.self) { try spool.materialize() }
    }
}
