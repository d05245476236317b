import ReplicaTestSupport
import Synchronization

/// One seeded generator that several threads draw from (the draws' order follows the threads').
final class SharedRandom: Sendable {
    private let generator: Mutex<SplitMix64>

    init(seed: UInt64) { generator = Mutex(SplitMix64(seed: seed)) }

    func next() -> UInt64 { generator.withLock { $0.next() } }
}
