import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore

/// The redo overlay's extent map: every byte must come from the newest change covering it,
/// whatever the overlaps, checked against painting a plain array in order.
@Suite(.timeLimit(.minutes(2)))
struct RedoOverlayTests {
    @Test func theNewestChangeWinsForEveryByte() {
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        let sourceBytes = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 8)
        defer { sourceBytes.deallocate() }
        for i in 0..<(1 << 16) { sourceBytes.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ i >> 8), toByteOffset: i, as: UInt8.self) }
        for round in 0..<200 {
            let space = Int.random(in: 16...600, using: &rng)
            var changes: [RedoOverlay.Extent] = []
            // Model: -1 untouched, -2 zero, otherwise the source offset the byte comes from.
            var model = [Int](repeating: -1, count: space)
            for _ in 0..<Int.random(in: 1...40, using: &rng) {
                let start = Int.random(in: 0..<space, using: &rng)
                let kind = Int.random(in: 0..<10, using: &rng)
                if kind == 0 {
                    // A size cut: everything above reads zeros.
                    changes.append(.init(start: Int64(start), end: Int64.max, bytes: nil))
                    for i in start..<space { model[i] = -2 }
                } else {
                    let end = min(space, start + Int.random(in: 1...80, using: &rng))
                    let from = Int.random(in: 0..<((1 << 16) - 100), using: &rng)
                    changes.append(.init(start: Int64(start), end: Int64(end), bytes: kind == 1 ? nil : UnsafeRawPointer(sourceBytes + from)))
                    for i in start..<end { model[i] = kind == 1 ? -2 : from + (i - start) }
                }
            }
            let extents = RedoOverlay.lastWriterWins(changes)
            for (a, b) in zip(extents, extents.dropFirst()) { #expect(a.end <= b.start, "seed \(seed) round \(round): extents overlap or are unsorted") }
            for i in 0..<space {
                let e = extents.first { $0.start <= Int64(i) && Int64(i) < $0.end }
                switch model[i] {
                case -1: #expect(e == nil, "seed \(seed) round \(round) byte \(i): untouched but covered")
                case -2: #expect(e != nil && e!.bytes == nil, "seed \(seed) round \(round) byte \(i): should read zeros")
                case let from:
                    #expect(e?.bytes.map { $0 + Int(Int64(i) - e!.start) } == UnsafeRawPointer(sourceBytes + from),
                            "seed \(seed) round \(round) byte \(i): wrong source")
                }
            }
        }
    }
}
