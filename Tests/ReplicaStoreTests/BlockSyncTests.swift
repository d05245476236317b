import Crypto
import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore

/// Block-checksum resync of two files without a mount: after `sync` the target's SHA-256 equals
/// the source's, and exactly the differing blocks' bytes were written.
@Suite(.timeLimit(.minutes(2)))
struct BlockSyncTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/rfs-blocksync-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in 0..<words.count {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                words[i] = state
            }
            for i in (words.count * 8)..<count { state ^= state << 13; state ^= state >> 7; raw[i] = UInt8(truncatingIfNeeded: state) }
        }
        return bytes
    }

    func put(_ path: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
    func sha(_ path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
    }

    @Test func flippedBlocksAreTheOnlyBytesSent() throws {
        defer { cleanup() }
        let bs = 64 << 10
        let size = 10 * (1 << 20) + 12345            // not a whole number of blocks
        let original = random(size, seed: 1)
        var changed = original
        let flipped = [0, 7, 8, 50, 160]              // 160 is the short last block
        for b in flipped { changed[min(b * bs + 100, size - 1)] ^= 0xff }
        try put(dir + "/src", changed)
        try put(dir + "/dst", original)
        let sync = BlockSync(blockSize: bs)
        let ranges = try sync.diff(dir + "/src", dir + "/dst")
        #expect(ranges == [0..<Int64(bs), Int64(7 * bs)..<Int64(9 * bs), Int64(50 * bs)..<Int64(51 * bs), Int64(160 * bs)..<Int64(size)])
        var last: BlockSync.Progress?
        let report = try sync.sync(from: dir + "/src", to: dir + "/dst") { last = $0 }
        let expectedBytes = Int64(4 * bs + (size - 160 * bs))
        print("flipped blocks: \(report.differingBlocks) of \(report.blocks), sent \(report.bytesSent) B of \(size) B in \(report.seconds) s")
        #expect(report.differingBlocks == flipped.count)
        #expect(report.blocks == 161)
        #expect(report.bytesSent == expectedBytes)
        #expect(report.bytesCompared == Int64(2 * size))
        #expect(last?.bytesDone == Int64(size) && last?.bytesSent == expectedBytes)
        #expect(try sha(dir + "/src") == sha(dir + "/dst"))
        // A second pass finds nothing.
        #expect(try sync.diff(dir + "/src", dir + "/dst").isEmpty)
        #expect(try sync.sync(from: dir + "/src", to: dir + "/dst").bytesSent == 0)
    }

    @Test func defaultBlockSizeAcrossWindows() throws {
        defer { cleanup() }
        let size = 80 << 20                                // spans three 32 MiB windows
        let original = random(size, seed: 2)
        var changed = original
        for b in [3, 31, 32, 33, 79] { changed[b << 20 + 4096] &+= 1 }
        try put(dir + "/src", changed)
        try put(dir + "/dst", original)
        let report = try BlockSync().sync(from: dir + "/src", to: dir + "/dst")
        #expect(report.differingBlocks == 5)
        #expect(report.bytesSent == 5 << 20)
        #expect(try sha(dir + "/src") == sha(dir + "/dst"))
        let sums = try BlockSync().checksums(of: dir + "/src")
        #expect(sums.count == 80)
        #expect(sums[0] == Array(SHA256.hash(data: changed[0..<(1 << 20)])))
    }

    @Test func sizeChangesBothWays() throws {
        defer { cleanup() }
        let bs = 4096
        let base = random(100_000, seed: 3)
        let sync = BlockSync(blockSize: bs)
        // Source grew: the new tail differs; the common part is equal.
        try put(dir + "/src", base + random(50_000, seed: 4))
        try put(dir + "/dst", base)
        let grown = try sync.diff(dir + "/src", dir + "/dst")
        #expect(grown == [Int64(24 * bs)..<150_000])      // block 24 is partial in dst
        var report = try sync.sync(from: dir + "/src", to: dir + "/dst")
        #expect(report.bytesSent == 150_000 - Int64(24 * bs))
        #expect(try sha(dir + "/src") == sha(dir + "/dst"))
        // Source shrank: diff reports the tail; sync cuts the target to size first, so the
        // common part compares equal and nothing is sent.
        try put(dir + "/src", Array(base[0..<30_000]))
        try put(dir + "/dst", base)
        #expect(try sync.diff(dir + "/src", dir + "/dst") == [Int64(7 * bs)..<100_000])
        report = try sync.sync(from: dir + "/src", to: dir + "/dst")
        #expect(report.bytesSent == 0)
        #expect(report.differingBlocks == 0)
        #expect(try sha(dir + "/src") == sha(dir + "/dst"))
        #expect(try FileSystem.stat(dir + "/dst").st_size == 30_000)
    }

    @Test func holesCompareAsZerosBothWays() throws {
        defer { cleanup() }
        let mib = 1 << 20
        // Source: 8 MiB, data only in block 1; target: random data everywhere.
        let fd = try FileDescriptor.open(dir + "/src", O_RDWR | O_CREAT, mode: 0o644)
        try fd.truncate(to: Int64(8 * mib))
        let data = random(mib, seed: 8)
        try data.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: mib, offset: Int64(mib)) }
        fd.close()
        try put(dir + "/dst", random(8 * mib, seed: 9))
        var report = try BlockSync().sync(from: dir + "/src", to: dir + "/dst")
        #expect(report.differingBlocks == 8 && report.bytesSent == Int64(8 * mib))
        #expect(try sha(dir + "/src") == sha(dir + "/dst"))
        // Written zeros on one side, holes on the other: equal, nothing sent.
        try put(dir + "/zeros", [UInt8](repeating: 0, count: mib) + data + [UInt8](repeating: 0, count: 6 * mib))
        #expect(try BlockSync().diff(dir + "/zeros", dir + "/src").isEmpty)
        #expect(try BlockSync().diff(dir + "/src", dir + "/zeros").isEmpty)
        report = try BlockSync().sync(from: dir + "/src", to: dir + "/zeros")
        #expect(report.bytesSent == 0)
        // One byte of data in the source's hole region is found.
        try put(dir + "/zeros", [UInt8](repeating: 0, count: 5 * mib + 7) + [1] + [UInt8](repeating: 0, count: 3 * mib - 8))
        #expect(try BlockSync().diff(dir + "/src", dir + "/zeros") == [Int64(mib)..<Int64(2 * mib), Int64(5 * mib)..<Int64(6 * mib)])
    }

    @Test func emptyFilesAndMissingTarget() throws {
        defer { cleanup() }
        let sync = BlockSync(blockSize: 8192)
        try put(dir + "/empty", [])
        try put(dir + "/dst", random(20_000, seed: 5))
        #expect(try sync.diff(dir + "/empty", dir + "/dst") == [0..<20_000])
        var report = try sync.sync(from: dir + "/empty", to: dir + "/dst")
        #expect(report.bytesSent == 0 && report.blocks == 0)
        #expect(try FileSystem.stat(dir + "/dst").st_size == 0)
        #expect(try sync.checksums(of: dir + "/empty").isEmpty)
        // Missing target: created; zero blocks of the source stay holes.
        var data = random(64 << 10, seed: 6)
        data += [UInt8](repeating: 0, count: 1 << 20)
        data += random(8192, seed: 7)
        try put(dir + "/src", data)
        report = try sync.sync(from: dir + "/src", to: dir + "/new")
        #expect(report.bytesSent == Int64((64 << 10) + 8192))
        #expect(try sha(dir + "/src") == sha(dir + "/new"))
        let st = try FileSystem.stat(dir + "/new")
        #expect(Int64(st.st_blocks) * 512 < Int64(data.count / 2), "zero blocks were written instead of left as holes")
        // A missing source is an error naming it, and the target is untouched.
        #expect(throws: SystemError.self) { try sync.sync(from: dir + "/nope", to: dir + "/new") }
        #expect(try sha(dir + "/src") == sha(dir + "/new"))
    }
}
