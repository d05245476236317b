import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// Failed-over disks without a mount: every point reads as its export; writes, truncates and
/// hole punches through the copy-on-write layer match a plain byte array, survive a reopen,
/// and never touch the store; a live view stays at its point while commits go on.
@Suite(.timeLimit(.minutes(2)))
struct FailoverDiskTests {
    let base: TargetStoreTests

    init() throws { base = try TargetStoreTests() }

    func readAll(_ disk: FailoverDisk) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: Int(disk.size))
        let n = try out.withUnsafeMutableBytes { try disk.read(into: $0.baseAddress!, count: $0.count, offset: 0) }
        #expect(n == out.count)
        return out
    }

    /// Builds vm1 with points 1...4 (writes, a shrink, a grow, a punched hole) and returns
    /// the store, the disk set still open, and each point's bytes of a.img and b.img.
    func makeStore(points: Int = 4) throws -> (DirectoryStore, DiskSet, [Int: [String: [UInt8]]], Set<String>) {
        try base.fill(base.disks + "/a.img", size: 256 << 10, seed: 1)
        try base.fill(base.disks + "/b.img", size: 128 << 10, seed: 2)
        let store = try DirectoryStore(root: base.storeDir)
        try store.create(vm: "vm1", seeds: [("a.img", base.disks + "/a.img"), ("b.img", base.disks + "/b.img")])
        let set = try DiskSet.open(directory: base.disks)
        var shipped = Set<String>()
        var expected: [Int: [String: [UInt8]]] = [:]
        for k in 1...points {
            try commitRound(k, store: store, set: set, shipped: &shipped)
            expected[k] = ["a.img": try base.read(base.disks + "/a.img"), "b.img": try base.read(base.disks + "/b.img")]
        }
        return (store, set, expected, shipped)
    }

    func commitRound(_ k: Int, store: DirectoryStore, set: DiskSet, shipped: inout Set<String>) throws {
        let a = try #require(set.journal(named: "a.img")), b = try #require(set.journal(named: "b.img"))
        try base.write(a, UInt8(k), count: 10_000, at: Int64(k * 7_000))
        try base.write(b, UInt8(k), count: 5_000, at: Int64(k * 3_000))
        if k == 3 { try b.setSize(100 << 10) }
        if k == 4 { try a.setSize(300 << 10); try base.write(a, 9, count: 100, at: (300 << 10) - 50) }
        if k == 2 { try a.fallocate(mode: 0x01 | 0x02, offset: 8192, length: 4096) }
        let rotation = try set.rotate()
        let logs = ["a.img": try base.sealedLogs("a.img", after: &shipped), "b.img": try base.sealedLogs("b.img", after: &shipped)]
        try store.commit(vm: "vm1", logs: logs, consistency: .crash, cut: rotation.cutID, timeNanos: Clock.nowNanos())
    }

    @Test func everyPointReadsAsItsStateWithoutACopy() throws {
        defer { base.cleanup() }
        let (store, set, expected, _) = try makeStore()
        defer { try? set.close() }
        for k in 1...4 {
            let point = try #require(try store.points("vm1").first { $0.id == k })
            for disk in ["a.img", "b.img"] {
                let dir = base.dir + "/fo-\(k)-\(disk)"
                try FileSystem.mkdirs(dir)
                let d = try FailoverDisk(store: store, vm: "vm1", disk: disk, point: point, directory: dir)
                #expect(try readAll(d) == expected[k]![disk]!, "point \(k) disk \(disk)")
                #expect(d.overlayBytes > 0 && d.overlayBytes < 256 << 10, "point \(k) maps its redo logs, never the disk")
            }
        }
    }

    @Test func writesMatchAPlainFileSurviveReopenAndLeaveTheStoreAlone() throws {
        defer { base.cleanup() }
        let (store, set, expected, _) = try makeStore()
        try set.close()
        let point = try #require(try store.points("vm1").first { $0.id == 2 })
        let dir = base.dir + "/fo"
        try FileSystem.mkdirs(dir)
        var model = expected[2]!["a.img"]!
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        do {
            let d = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
            for step in 0..<300 {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0:
                    // Grow or shrink, unaligned.
                    let size = Int.random(in: 50_000...400_000, using: &rng)
                    try d.setSize(Int64(size))
                    if size < model.count { model.removeLast(model.count - size) } else { model += [UInt8](repeating: 0, count: size - model.count) }
                case 1:
                    // Punch a hole or zero a range (size kept).
                    guard model.count > 10 else { continue }
                    let off = Int.random(in: 0..<model.count, using: &rng)
                    let len = Int.random(in: 1...30_000, using: &rng)
                    try d.fallocate(mode: Bool.random(using: &rng) ? 0x01 | 0x02 : 0x10 | 0x01, offset: Int64(off), length: Int64(len))
                    for i in off..<min(off + len, model.count) { model[i] = 0 }
                default:
                    // A write anywhere, also past the end (the gap reads zeros).
                    let off = Int.random(in: 0..<(model.count + 20_000), using: &rng)
                    let bytes = (0..<Int.random(in: 1...20_000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    try bytes.withUnsafeBytes { try d.write($0, offset: Int64(off)) }
                    if off + bytes.count > model.count { model += [UInt8](repeating: 0, count: off + bytes.count - model.count) }
                    model.replaceSubrange(off..<(off + bytes.count), with: bytes)
                }
                if step % 25 == 0 { #expect(try readAll(d) == model, "seed \(seed), after step \(step)") }
            }
            #expect(try readAll(d) == model)
            try d.sync()
        }
        // Reopened from its saved layer (as after a daemon restart): the same bytes.
        let again = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
        #expect(try readAll(again) == model)
        // The store did not change: every point still exports as before.
        for k in 1...4 {
            let out = base.dir + "/export-\(k)"
            try store.export(vm: "vm1", point: .id(k), disk: "a.img", to: out)
            #expect(try base.read(out) == expected[k]!["a.img"]!, "point \(k)")
        }
    }

    @Test func aLiveViewStaysAtItsPointWhileCommitsGoOn() throws {
        defer { base.cleanup() }
        let (store, set, expected, shipped0) = try makeStore(points: 2)
        defer { try? set.close() }
        var shipped = shipped0
        let point = try #require(try store.points("vm1").first { $0.id == 2 })
        let dir = base.dir + "/drill"
        try FileSystem.mkdirs(dir)
        _ = try store.beginFailover(vm: "vm1", point: .id(2), kind: .test, mountpoint: dir, sourceDisksDir: nil)
        let a = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
        let b = try FailoverDisk(store: store, vm: "vm1", disk: "b.img", point: point, directory: dir)
        #expect(try readAll(a) == expected[2]!["a.img"]!)
        for k in 3...5 {
            try commitRound(k, store: store, set: set, shipped: &shipped)
            #expect(try readAll(a) == expected[2]!["a.img"]!, "after commit \(k)")
            #expect(try readAll(b) == expected[2]!["b.img"]!, "after commit \(k)")
        }
        // Pruning keeps the drill's point and merges the one before it into the base, under the
        // open view (whose logs it deletes): the view reads the same bytes.
        try store.prune(vm: "vm1", retentionSeconds: 0)
        #expect(try store.points("vm1").map(\.id) == [2, 3, 4, 5])
        #expect(try store.catalog("vm1").baseThrough == 2)
        #expect(try readAll(a) == expected[2]!["a.img"]!)
        #expect(try readAll(b) == expected[2]!["b.img"]!)
        try store.discardFailover(vm: "vm1")
    }

    func readAt(_ d: FailoverDisk, _ off: Int64, _ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: n)
        _ = try out.withUnsafeMutableBytes { try d.read(into: $0.baseAddress!, count: n, offset: off) }
        return out
    }

    /// A crash (the layer dropped without fsync) after growing and writing; reopened, then grown
    /// again: the grown range reads zeros, not the bytes written before the crash.
    @Test func growAfterACrashReadsZeros() throws {
        defer { base.cleanup() }
        let (store, set, _, _) = try makeStore(points: 2)
        try set.close()
        let point = try #require(try store.points("vm1").last)
        let dir = base.dir + "/fo"
        try FileSystem.mkdirs(dir)
        let size0: Int64
        do {
            let d = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
            size0 = d.size
            try [UInt8](repeating: 1, count: 4096).withUnsafeBytes { try d.write($0, offset: 0) }
            try d.sync()
            try [UInt8](repeating: 0xAB, count: 8192).withUnsafeBytes { try d.write($0, offset: size0 + 100_000) }
        }
        let d = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
        #expect(d.size == size0)
        try d.setSize(size0 + 200_000)
        #expect(try readAt(d, size0 + 100_000, 8192) == [UInt8](repeating: 0, count: 8192))
    }

    /// Fsynced data, then a shrink, then a crash: either the shrink held or the fsynced tail
    /// is back, never the old size with that tail read as zeros.
    @Test func aShrinkThenACrashNeverZeroesFsyncedData() throws {
        defer { base.cleanup() }
        let (store, set, _, _) = try makeStore(points: 2)
        try set.close()
        let point = try #require(try store.points("vm1").last)
        let dir = base.dir + "/fo"
        try FileSystem.mkdirs(dir)
        let size0: Int64
        let data = [UInt8](repeating: 0x5A, count: 8192)
        do {
            let d = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
            size0 = d.size
            try data.withUnsafeBytes { try d.write($0, offset: size0 - 8192) }
            try d.sync()
            try d.setSize(4096)
        }
        let d = try FailoverDisk(store: store, vm: "vm1", disk: "a.img", point: point, directory: dir)
        if d.size == size0 {
            #expect(try readAt(d, size0 - 8192, 8192) == data, "fsynced tail lost after an unsynced shrink")
        } else {
            #expect(d.size == 4096)
        }
    }

    @Test func theCopyOnWriteMapRefusesDamage() throws {
        let words: [UInt64] = [1, 0, ~0]
        var bytes = CowLayer.encode(size: 12345, words: words)
        let decoded = try #require(CowLayer.decode(bytes))
        #expect(decoded.0 == 12345 && decoded.1 == words)
        bytes[20] ^= 0x40
        #expect(CowLayer.decode(bytes) == nil)
    }
}
