import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
#if canImport(Glibc)
import Glibc
#endif

/// Issue 16, findings 3 and 5 at the journal: the cut notices an active log deleted from
/// outside and an image changed beside the mount, and the mount's own changes never count.
@Suite(.timeLimit(.minutes(2)))
struct ChainIntegrityTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/rfs-chain-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try Data([UInt8](repeating: 1, count: 1 << 20)).write(to: URL(fileURLWithPath: dir + "/d.img"))
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ j: ImageJournal, _ value: UInt8, count: Int, at offset: Int64) throws {
        try [UInt8](repeating: value, count: count).withUnsafeBytes { try j.write($0, offset: offset) }
    }

    @Test(.timeLimit(.minutes(1)))
    func theMountsOwnChangesKeepTheChainWhole() throws {
        defer { cleanup() }
        let set = try DiskSet.open(directory: dir)
        defer { try? set.close() }
        let j = try #require(set.journal(named: "d.img"))
        for k in 0..<50 {
            try write(j, UInt8(k), count: 4096, at: Int64(k) * 8192)
            if k % 10 == 9 { _ = try set.rotate() }
        }
        try write(j, 9, count: 4096, at: (1 << 20) + 4096)      // grows the image
        try j.setSize(3 << 19)                                   // shrinks it
        try j.fallocate(mode: 0x01 | 0x02, offset: 0, length: 8192)
        try j.fallocate(mode: 0, offset: 0, length: 2 << 20)     // grows it
        j.noteAttributeChange()
        _ = try set.rotate()
        #expect(j.chainBreak == nil)
        #expect(j.checkChainNow() == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func aDeletedActiveLogBreaksTheChainUntilARestart() throws {
        defer { cleanup() }
        let set = try DiskSet.open(directory: dir)
        defer { try? set.close() }
        let j = try #require(set.journal(named: "d.img"))
        try write(j, 2, count: 4096, at: 0)
        try FileSystem.remove(j.state.activeLog)
        try write(j, 3, count: 4096, at: 4096)
        _ = try set.rotate()
        let reason = try #require(j.chainBreak)
        #expect(reason.contains("was deleted"), "\(reason)")
        // Kept across later cuts, until a resync restarts the chain.
        _ = try set.rotate()
        #expect(j.chainBreak == reason)
        j.restartChain()
        #expect(j.chainBreak == nil)
        try write(j, 4, count: 4096, at: 8192)
        _ = try set.rotate()
        #expect(j.chainBreak == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func anImageTruncatedOrWrittenBesideTheMountBreaksTheChain() throws {
        defer { cleanup() }
        let set = try DiskSet.open(directory: dir)
        defer { try? set.close() }
        let j = try #require(set.journal(named: "d.img"))
        try write(j, 2, count: 4096, at: 0)
        #expect(truncate(dir + "/d.img", 512 << 10) == 0)
        _ = try set.rotate()
        #expect(j.chainBreak?.contains("size 524288") == true, "\(j.chainBreak ?? "no break")")
        j.restartChain()

        // Same size, new bytes: only the change time tells. Past a clock tick first.
        try write(j, 3, count: 4096, at: 0)
        usleep(30_000)
        let fd = try FileDescriptor.open(dir + "/d.img", O_WRONLY)
        try [UInt8](repeating: 0xee, count: 4096).withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: 4096, offset: 65536) }
        fd.close()
        _ = try set.rotate()
        #expect(j.chainBreak?.contains("after the mount's last write") == true, "\(j.chainBreak ?? "no break")")
    }
}
