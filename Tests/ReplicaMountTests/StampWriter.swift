import Foundation
import ReplicaTestSupport
import Synchronization
import Testing

/// A writer for checking a cut taken while it runs. One thread writes 4 KiB blocks at random
/// into regions of one or more disks, in turn and synchronously (pwrite, then fdatasync: the
/// write is acknowledged when that returns). Every block carries a stamp: one sequence number
/// across all the disks, the disk and the block, and a checksum. Because one thread issues the
/// writes one at a time, a crash-consistent cut of all the disks is a single sequence number
/// C: every block holds the last stamp at or before C, or its content from before the writer
/// started. `check` finds whether such a C exists within the window the cut was taken in.
final class StampWriter: Sendable {
    static let block = 4096
    static let magic: UInt64 = 0x504D_4154_5353_4652 // "RFSSTAMP"

    struct Region: Sendable {
        var path: String
        /// First block and number of blocks written (4 KiB units).
        var first: Int
        var count: Int
    }

    /// One write: its sequence number, region index and block.
    struct Write: Sendable {
        var seq: UInt64
        var region: Int
        var block: Int
    }

    struct State {
        var writes: [Write] = []
        var acked: UInt64 = 0
        var stop = false
        var finished = false
        var error: String?
    }

    let regions: [Region]
    let seed: UInt64
    let pause: useconds_t
    private let state = Mutex(State())

    /// `pause` microseconds between writes keeps the rate modest (a resync's change stays small).
    init(regions: [Region], seed: UInt64, pause: useconds_t = 0) {
        self.regions = regions
        self.seed = seed
        self.pause = pause
    }

    /// Sequence number of the last write issued (started) so far.
    var issued: UInt64 { state.withLock { UInt64($0.writes.count) } }
    /// Sequence number of the last write acknowledged so far.
    var acked: UInt64 { state.withLock { $0.acked } }
    var error: String? { state.withLock { $0.error } }

    /// The stamped bytes of write `seq` to `block` of region `region`.
    static func stamp(seq: UInt64, region: Int, block: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.block)
        var rng = SplitMix64(seed: seq &* 0x9E37_79B9 ^ UInt64(region) << 48 ^ UInt64(block))
        for i in stride(from: 32, to: Self.block, by: 8) {
            withUnsafeBytes(of: rng.next().littleEndian) { for j in 0..<8 { bytes[i + j] = $0[j] } }
        }
        for (i, v) in [magic, seq, UInt64(region), UInt64(block)].enumerated() {
            withUnsafeBytes(of: v.littleEndian) { for j in 0..<8 { bytes[i * 8 + j] = $0[j] } }
        }
        return bytes
    }

    /// The sequence number stamped in `bytes` for `block` of `region`, or 0 when the block holds
    /// no intact stamp of that block.
    static func read(_ bytes: ArraySlice<UInt8>, region: Int, block: Int) -> UInt64 {
        guard bytes.count == Self.block else { return 0 }
        let start = bytes.startIndex
        func word(_ i: Int) -> UInt64 {
            var v: UInt64 = 0
            for j in 0..<8 { v |= UInt64(bytes[start + i * 8 + j]) << (8 * j) }
            return v
        }
        guard word(0) == magic, word(2) == UInt64(region), word(3) == UInt64(block) else { return 0 }
        let seq = word(1)
        let same = stamp(seq: seq, region: region, block: block).withUnsafeBytes { a in
            bytes.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, Self.block) == 0 }
        }
        return same ? seq : 0
    }

    /// Starts the writing thread.
    func start() {
        let thread = Thread { [self] in run() }
        thread.start()
    }

    private func run() {
        var rng = SplitMix64(seed: seed)
        var fds: [Int32] = []
        defer {
            fds.forEach { close($0) }
            state.withLock { $0.finished = true }
        }
        for r in regions {
            let fd = open(r.path, O_WRONLY)
            guard fd >= 0 else { return state.withLock { $0.error = "open \(r.path): errno \(errno)" } }
            fds.append(fd)
        }
        while true {
            let (seq, stop) = state.withLock { s -> (UInt64, Bool) in
                if s.stop { return (0, true) }
                return (UInt64(s.writes.count + 1), false)
            }
            if stop { return }
            let region = Int(rng.next() % UInt64(regions.count))
            let block = regions[region].first + Int(rng.next() % UInt64(regions[region].count))
            state.withLock { $0.writes.append(Write(seq: seq, region: region, block: block)) }
            let bytes = Self.stamp(seq: seq, region: region, block: block)
            let n = bytes.withUnsafeBytes { pwrite(fds[region], $0.baseAddress, Self.block, off_t(block * Self.block)) }
            guard n == Self.block, fdatasync(fds[region]) == 0 else {
                return state.withLock { $0.error = "write \(seq) to \(regions[region].path) block \(block) failed: errno \(errno)" }
            }
            state.withLock { $0.acked = seq }
            if pause > 0 { usleep(pause) }
        }
    }

    /// Stops the thread and waits for it.
    func stop() {
        state.withLock { $0.stop = true }
        while !state.withLock({ $0.finished }) { usleep(2_000) }
    }

    /// Checks exported disks (one file per region, same order) against the writes: there must
    /// be one cut C in `window` (the last write acknowledged before the cut was requested ...
    /// the last one issued when it returned) such that every written block holds exactly the
    /// last stamp at or before C, and a block not written up to C holds no stamp at all.
    /// Every block the writer never wrote must equal the same block of `sources` (the disks
    /// as they are now, read after `stop`), and the sizes must match. Returns nil when all
    /// holds, else what is wrong.
    func check(exports: [String], sources: [String], window: ClosedRange<UInt64>) -> String? {
        let writes = state.withLock { $0.writes }
        var low = window.lowerBound, high = window.upperBound
        var problems: [String] = []
        // Per block, the sequence numbers written to it, in order.
        var history: [Int: [Int: [UInt64]]] = [:]
        for w in writes { history[w.region, default: [:]][w.block, default: []].append(w.seq) }
        for (r, region) in regions.enumerated() {
            guard let data = FileManager.default.contents(atPath: exports[r]).map([UInt8].init) else {
                return "cannot read \(exports[r])"
            }
            guard let source = FileManager.default.contents(atPath: sources[r]).map([UInt8].init) else {
                return "cannot read \(sources[r])"
            }
            guard source.count == data.count else { return "\(exports[r]) has \(data.count) bytes, \(sources[r]) \(source.count)" }
            let written = history[r] ?? [:]
            for block in 0..<(data.count / Self.block) where written[block] == nil {
                let at = block * Self.block
                // memcmp: an element-wise compare of every block is slow in a debug build.
                let differs = data.withUnsafeBytes { d in
                    source.withUnsafeBytes { s in memcmp(d.baseAddress! + at, s.baseAddress! + at, Self.block) != 0 }
                }
                if differs {
                    problems.append("\(exports[r]) block \(block), never written by the stamper, differs from the source")
                    break
                }
            }
            for (block, seqs) in history[r] ?? [:] {
                let at = block * Self.block
                let found = at + Self.block <= data.count ? Self.read(data[at..<(at + Self.block)], region: r, block: block) : 0
                if found == 0 {
                    // Nothing written here up to the cut: C is before the first write.
                    high = min(high, seqs[0] - 1)
                    if seqs[0] <= window.lowerBound { problems.append("\(region.path) block \(block): no stamp, but write \(seqs[0]) was acknowledged before the cut") }
                } else if let i = seqs.firstIndex(of: found) {
                    low = max(low, found)
                    if i + 1 < seqs.count { high = min(high, seqs[i + 1] - 1) }
                    if i + 1 < seqs.count, seqs[i + 1] <= window.lowerBound {
                        problems.append("\(region.path) block \(block): stamp \(found), but the newer write \(seqs[i + 1]) was acknowledged before the cut")
                    }
                    if found > window.upperBound { problems.append("\(region.path) block \(block): stamp \(found) was issued after the cut") }
                } else {
                    problems.append("\(region.path) block \(block): stamp \(found) was never written there")
                }
            }
        }
        if low > high { problems.append("no single cut: the blocks need C >= \(low) and C <= \(high)") }
        return problems.isEmpty ? nil : problems.prefix(5).joined(separator: "; ") + " (\(writes.count) writes, window \(window), seed \(seed))"
    }
}
