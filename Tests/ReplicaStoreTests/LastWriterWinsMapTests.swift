import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaStore

/// The batched last-writer-wins map: the same bytes as one sweep over every change, while the
/// extents it holds at once follow the disk's size, not the number of changes (the point
/// overlay's memory bound over a long retention window).
@Suite(.timeLimit(.minutes(2)))
struct LastWriterWinsMapTests {
    /// Which change each block of a small disk reads from after `changes`, by painting in order.
    struct Change { var start: Int; var end: Int; var id: Int }
    struct Block: SweptExtent {
        var start: Int64
        var end: Int64
        var id: Int  // the change; -1 for zeros past a size cut
        func piece(from at: Int64, to: Int64) -> Block { Block(start: at, end: to, id: id) }
        func continues(into next: Block) -> Bool { id == next.id }
    }

    static func painted(_ extents: [Block], blocks: Int) -> [Int] {
        var out = [Int](repeating: -2, count: blocks)  // -2: untouched
        for e in extents {
            for b in Int(e.start)..<Int(min(e.end, Int64(blocks))) { out[b] = e.id }
        }
        return out
    }

    @Test func aFoldedMapReadsAsOneSweepOverEveryChange() {
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        for round in 0..<60 {
            let blocks = Int.random(in: 8...300, using: &rng)
            var changes: [Block] = []
            var model = [Int](repeating: -2, count: blocks)
            for id in 0..<Int.random(in: 1...400, using: &rng) {
                let start = Int.random(in: 0..<blocks, using: &rng)
                if Int.random(in: 0..<20, using: &rng) == 0 {
                    changes.append(Block(start: Int64(start), end: Int64.max, id: -1))
                    for b in start..<blocks { model[b] = -1 }
                } else {
                    let end = min(blocks, start + Int.random(in: 1...20, using: &rng))
                    changes.append(Block(start: Int64(start), end: Int64(end), id: id))
                    for b in start..<end { model[b] = id }
                }
            }
            let batch = [1, 2, 5, 64][round % 4]
            var map = LastWriterWinsMap<Block>(minimumBatch: batch)
            for c in changes { map.add(c) }
            let extents = map.finish()
            for (a, b) in zip(extents, extents.dropFirst()) { #expect(a.end <= b.start, "seed \(seed) round \(round): overlap or unsorted") }
            #expect(Self.painted(extents, blocks: blocks) == model, "seed \(seed) round \(round) batch \(batch)")
            #expect(Self.painted(extents, blocks: blocks) == Self.painted(LastWriterWins.sweep(changes), blocks: blocks))
            #expect(map.changesAdded == changes.count)
        }
    }

    /// 40,000 random writes over a 256-block disk: the map never holds more than the disk's
    /// blocks plus one batch, where gathering the changes first would hold all 40,000.
    @Test func extentsHeldAtOnceFollowTheDiskNotTheWindow() {
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        let blocks = 256, batch = 1024, count = 40_000
        var map = LastWriterWinsMap<Block>(minimumBatch: batch)
        var model = [Int](repeating: -2, count: blocks)
        for id in 0..<count {
            let start = Int.random(in: 0..<blocks, using: &rng)
            let end = min(blocks, start + Int.random(in: 1...16, using: &rng))
            map.add(Block(start: Int64(start), end: Int64(end), id: id))
            for b in start..<end { model[b] = id }
        }
        let extents = map.finish()
        #expect(Self.painted(extents, blocks: blocks) == model, "seed \(seed)")
        #expect(map.changesAdded == count)
        #expect(map.peakHeld <= blocks + batch, "held \(map.peakHeld) extents at once for a disk of \(blocks) blocks (seed \(seed))")
    }

    /// The same bound through `RedoOverlay` over real sealed logs: 20 logs of 500 random
    /// 512-byte writes each over a 64 KiB disk, read back byte for byte against the logs
    /// applied in order, with the overlay holding at most the disk's sectors plus one batch.
    @Test func aRedoOverlayOverManyRecordsHoldsTheDiskNotTheRecords() throws {
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        let dir = NSTemporaryDirectory() + "rfs-lwwmap-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = 64 << 10, sector = 512, batch = 300
        var expected = [UInt8](repeating: 0, count: size)
        var logs: [String] = []
        var block = [UInt8](repeating: 0, count: sector)
        for n in 1...20 {
            let path = dir + "/d.img.\(String(n).leftPadded(6)).hrl"
            let writer = try DirectLogWriter(path: path, header: LogHeader(
                imageName: "d.img", chainID: [UInt8](repeating: 0, count: 16), sequence: UInt64(n), firstLSN: 1,
                createdNanos: 1, imageSize: UInt64(size)))
            for k in 0..<500 {
                let at = Int.random(in: 0..<(size / sector), using: &rng) * sector
                let salt = UInt8.random(in: 0...255, using: &rng)
                for i in 0..<sector { block[i] = UInt8(truncatingIfNeeded: i &* 31 &+ k &* 7 &+ n) ^ salt }
                try block.withUnsafeBytes { try writer.appendWrite($0.baseAddress!, count: sector, offset: Int64(at)) }
                expected.replaceSubrange(at..<(at + sector), with: block)
            }
            try writer.seal(reason: .rotation, cutID: UInt64(n))
            logs.append(path)
        }
        let overlay = try RedoOverlay(logs: logs, batch: batch)
        #expect(overlay.recordsRead == 10_000)
        #expect(overlay.peakExtentsHeld <= size / sector + batch,
                "held \(overlay.peakExtentsHeld) extents at once for \(size / sector) sectors (seed \(seed))")
        var read = [UInt8](repeating: 0xEE, count: size)
        try read.withUnsafeMutableBytes { try overlay.overlay($0.baseAddress!, offset: 0, count: size) }
        #expect(read == expected, "seed \(seed): the overlay does not read as the logs applied in order")
    }
}
