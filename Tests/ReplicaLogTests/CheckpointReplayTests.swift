import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
import CLinux

/// Checkpoints and crash replay without a mount: after a crash, whatever part of the writes
/// since the last checkpoint reached the image, reopening the disks directory brings the image
/// to exactly what the log says; flush-heavy logs (zeros written ahead) seal and recover clean.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CheckpointReplayTests {
    let dir: String

    init() throws {
        var bytes = Array("/tmp/rfs-ckpt-XXXXXX".utf8CString)
        let p = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        dir = String(cString: p!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ j: ImageJournal, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try j.write($0, offset: offset) }
    }

    /// Random writes, size changes and zeroed ranges on a 256 KiB image.
    func randomChanges(_ j: ImageJournal, _ rng: inout SplitMix64, count: Int) throws {
        for _ in 0..<count {
            switch rng.next() % 10 {
            case 0:
                try j.setSize(Int64(128 << 10) + Int64(rng.next() % (192 << 10)))
            case 1:
                let at = Int64(rng.next() % (200 << 10))
                try j.fallocate(mode: RFS_FALLOC_PUNCH_HOLE | RFS_FALLOC_KEEP_SIZE, offset: at, length: Int64(1 + rng.next() % 20000))
            default:
                let n = Int(1 + rng.next() % 9000)
                let value = UInt8(truncatingIfNeeded: rng.next())
                try write(j, [UInt8](repeating: value, count: n), at: Int64(rng.next() % (250 << 10)))
            }
        }
    }

    @Test func replayFromTheCheckpointRestoresEveryChangeWhateverReachedTheImage() throws {
        defer { cleanup() }
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = disks + "/a.img"
        try Data((0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: URL(fileURLWithPath: image))
        var set: DiskSet? = try DiskSet.open(directory: disks)
        let j = set!.images[0]
        try randomChanges(j, &rng, count: 60)
        // A checkpoint in the middle (no writer runs: the image is its state at that LSN), and
        // a rotation after it, so the replay runs across a sealed log into the active one.
        try set!.checkpoint([j])
        let atCheckpoint = try FileSystem.readFile(image)
        let checkpointLSN = try #require(ImageCheckpoint.load(disksDir: disks, image: "a.img")).lsn
        try randomChanges(j, &rng, count: 40)
        // No later checkpoint is recorded (a record only moves forward: this one is the last),
        // as if the daemon died inside the rotation, after its cut.
        set!.checkpointLock.withLock { set!.checkpointed["a.img"] = (UInt64.max, 0) }
        _ = try set!.rotate()
        try randomChanges(j, &rng, count: 40)
        let final = try FileSystem.readFile(image)
        #expect(ImageCheckpoint.load(disksDir: disks, image: "a.img")?.lsn == checkpointLSN)
        set = nil // killed: no seal

        // Three crashes: the image as the daemon left it (kill -9), back at the checkpoint
        // (power loss), and each 4 KiB page and the size picked at random from the two.
        let saved = dir + "/saved"
        try FileSystem.mkdirs(saved)
        #expect(system("cp -a '\(disks)/.' '\(saved)/'") == 0)
        for variant in 0..<3 {
            #expect(system("rm -rf '\(disks)' && mkdir '\(disks)' && cp -a '\(saved)/.' '\(disks)/'") == 0)
            var crashed = final
            if variant == 1 { crashed = atCheckpoint }
            if variant == 2 {
                let finalSize = rng.next() % 2 == 0
                crashed = finalSize ? final : atCheckpoint
                let other = finalSize ? atCheckpoint : final
                for page in stride(from: 0, to: min(crashed.count, other.count), by: 4096) where rng.next() % 2 == 0 {
                    for i in page..<min(page + 4096, crashed.count, other.count) { crashed[i] = other[i] }
                }
            }
            try Data(crashed).write(to: URL(fileURLWithPath: image))
            let reopened = try DiskSet.open(directory: disks)
            #expect(reopened.images[0].recoveredFromCrash)
            #expect(try FileSystem.readFile(image) == final, "variant \(variant) (seed \(seed)): the image after replay differs from the log's")
            // The new checkpoint is past the replayed records: a clean reopen replays nothing.
            #expect(try #require(ImageCheckpoint.load(disksDir: disks, image: "a.img")).lsn > checkpointLSN)
            try reopened.close()
        }
    }

    @Test func flushHeavyLogsWriteAheadAndStillSealAndRecoverClean() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = disks + "/a.img"
        let base = dir + "/base.img"
        let initial = Data((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        try initial.write(to: URL(fileURLWithPath: image))
        try initial.write(to: URL(fileURLWithPath: base))
        var set: DiskSet? = try DiskSet.open(directory: disks)
        let j = set!.images[0]
        // 4 KiB writes, each flushed: the log is extended with zeros ahead of its records.
        for i in 0..<40 {
            try write(j, [UInt8](repeating: UInt8(i + 1), count: 4096), at: Int64(i * 8192))
            try j.sync(dataOnly: true)
        }
        let active = j.state.activeLog
        let logBytes = j.state.logBytes
        #expect(try FileSystem.stat(active).st_size > logBytes, "no log space written ahead under flush-heavy writes")
        // What is written ahead is zeros (the shared zero mapping), read as a torn tail.
        let ahead = try FileSystem.readFile(active)[Int(logBytes)...]
        #expect(!ahead.isEmpty && ahead.allSatisfy { $0 == 0 }, "the space written ahead of the log is not all zeros")
        // Sealed by a rotation: the zeros are cut, the log ends at its seal.
        _ = try set!.rotate()
        let sealed = try LogScanner.scan(active)
        #expect(sealed.tail == .clean && sealed.isSealed && sealed.fileSize == sealed.validEnd)
        for i in 40..<80 {
            try write(j, [UInt8](repeating: UInt8(i + 1), count: 4096), at: Int64(i * 8192))
            try j.sync(dataOnly: true)
        }
        let second = j.state.activeLog
        set = nil // killed: the active log ends in zeros, a torn tail
        guard case .torn = try LogScanner.scan(second).tail else { Issue.record("expected the zeros to read as a torn tail"); return }
        set = try DiskSet.open(directory: disks)
        let recovered = try LogScanner.scan(second)
        #expect(recovered.tail == .clean && recovered.seal?.reason == .recovered && recovered.recordCount == 41)
        try set!.close()
        set = nil
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        try LogApplier(paths: logs).apply(to: base)
        #expect(try FileSystem.readFile(base) == FileSystem.readFile(image))
    }
}
