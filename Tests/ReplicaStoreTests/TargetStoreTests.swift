import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// The target store without a mount: logs made by the real write path (ImageJournal) are
/// committed as recovery points; every point exports byte for byte; crashes roll back.
@Suite(.timeLimit(.minutes(2)))
struct TargetStoreTests {
    let dir: String
    var disks: String { dir + "/disks" }
    var storeDir: String { dir + "/store" }

    init() throws {
        var template = Array("/tmp/rfs-store-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try FileSystem.mkdirs(disks)
        try FileSystem.mkdirs(storeDir)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func fill(_ path: String, size: Int, seed: Int) throws {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func write(_ j: ImageJournal, _ value: UInt8, count: Int, at offset: Int64) throws {
        try [UInt8](repeating: value, count: count).withUnsafeBytes { try j.write($0, offset: offset) }
    }

    func read(_ path: String) throws -> [UInt8] { try FileSystem.readFile(path) }

    /// Sealed logs of `disk` not yet in `shipped`, in sequence order.
    func sealedLogs(_ disk: String, after shipped: inout Set<String>) throws -> [String] {
        let all = try FileSystem.list(disks).filter { LogName.parse($0)?.image == disk }.map { disks + "/" + $0 }
        let sealed = try all.filter { try LogScanner.scan($0).isSealed && !shipped.contains($0) }
        shipped.formUnion(sealed)
        return sealed
    }

    @Test func everyPointExportsItsStateAndPruningKeepsTheRest() throws {
        defer { cleanup() }
        try fill(disks + "/a.img", size: 256 << 10, seed: 1)
        try fill(disks + "/b.img", size: 128 << 10, seed: 2)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm1", seeds: [("a.img", disks + "/a.img"), ("b.img", disks + "/b.img")])
        let set = try DiskSet.open(directory: disks)
        let a = try #require(set.journal(named: "a.img")), b = try #require(set.journal(named: "b.img"))
        var shipped = Set<String>()
        var expected: [Int: ([UInt8], [UInt8])] = [:]
        for k in 1...4 {
            try write(a, UInt8(k), count: 10_000, at: Int64(k * 7_000))
            try write(a, UInt8(100 + k), count: 3_000, at: 1_000)
            try write(b, UInt8(k), count: 5_000, at: Int64(k * 3_000))
            if k == 3 { try b.setSize(100 << 10) }                                  // shrink
            if k == 4 { try a.setSize(300 << 10); try write(a, 9, count: 100, at: (300 << 10) - 50) } // grow
            if k == 2 { try a.fallocate(mode: 0x01 | 0x02, offset: 8192, length: 4096) } // punch a hole
            let rotation = try set.rotate()
            let logs = ["a.img": try sealedLogs("a.img", after: &shipped), "b.img": try sealedLogs("b.img", after: &shipped)]
            let point = try store.commit(vm: "vm1", logs: logs, consistency: k == 2 ? .app : .crash,
                                         cut: rotation.cutID, timeNanos: UInt64(k) * 3_600_000_000_000)
            #expect(point.id == k)
            expected[k] = (try read(disks + "/a.img"), try read(disks + "/b.img"))
        }
        try set.close()
        for k in 1...4 {
            for (disk, bytes) in [("a.img", expected[k]!.0), ("b.img", expected[k]!.1)] {
                let out = dir + "/export-\(k)-\(disk)"
                let point = try store.export(vm: "vm1", point: .id(k), disk: disk, to: out)
                #expect(point.id == k)
                #expect(try read(out) == bytes, "point \(k) disk \(disk)")
            }
        }
        #expect(try store.export(vm: "vm1", point: .latestApp, disk: "a.img", to: dir + "/app").id == 2)
        #expect(try read(dir + "/app") == expected[2]!.0)
        #expect(try store.points("vm1").map(\.consistency) == [.crash, .app, .crash, .crash])

        // Retention of 1.5 h at hour 4: points 1 and 2 expire, 3 and 4 still export exactly.
        let pruned = try store.prune(vm: "vm1", retentionSeconds: 5400, nowNanos: 4 * 3_600_000_000_000 + 1)
        #expect(pruned == [1, 2])
        #expect(try store.points("vm1").map(\.id) == [3, 4])
        for k in 3...4 {
            let out = dir + "/after-prune-\(k)"
            try store.export(vm: "vm1", point: .id(k), disk: "b.img", to: out)
            #expect(try read(out) == expected[k]!.1)
        }
        #expect(throws: ReplicaError("recovery point 1 not found for VM vm1", code: .noSuchPoint)) {
            try store.export(vm: "vm1", point: .id(1), disk: "a.img", to: dir + "/x")
        }
        #expect(throws: ReplicaError("VM vm1 has no app-consistent recovery point", code: .noSuchPoint)) {
            try store.export(vm: "vm1", point: .latestApp, disk: "a.img", to: dir + "/x")
        }
        #expect(try FileSystem.list(storeDir + "/vm1/points").count == 1) // only point 4's undo is needed
    }

    /// A crash mid-commit (redo logs half stored, catalog not saved) leaves the last point as it
    /// was and the resend commits; a crash mid-merge (base partly brought forward, catalog not
    /// saved) changes no point's bytes and the next prune finishes it.
    @Test func crashesMidCommitAndMidMergeLoseNothing() throws {
        defer { cleanup() }
        try fill(disks + "/a.img", size: 64 << 10, seed: 3)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        let set = try DiskSet.open(directory: disks)
        let a = set.images[0]
        var shipped = Set<String>()
        try write(a, 1, count: 4096, at: 0)
        _ = try set.rotate()
        try store.commit(vm: "vm", logs: ["a.img": try sealedLogs("a.img", after: &shipped)], consistency: .crash, cut: 1)
        let atPoint1 = try read(disks + "/a.img")
        try write(a, 2, count: 9000, at: 2000)
        try a.setSize(32 << 10)
        try write(a, 3, count: 3000, at: 40 << 10)
        _ = try set.rotate()
        let logs = try sealedLogs("a.img", after: &shipped)
        try set.close()
        let atPoint2 = try read(disks + "/a.img")

        // The crash mid-commit: half of the log stored as point 2's, the catalog not saved.
        let pending = store.pointDirectory("vm", 2, pending: true)
        try FileSystem.mkdirs(pending)
        let half = try read(logs[0])
        try Data(half.prefix(half.count / 2)).write(to: URL(fileURLWithPath: pending + "/a.img.000001.hrl"))
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/during")
        #expect(try read(dir + "/during") == atPoint1)
        try store.recover(vm: "vm")
        #expect(!FileSystem.exists(pending))
        #expect(try store.points("vm").map(\.id) == [1])
        // The shipper sends the same logs again; they commit once.
        try store.commit(vm: "vm", logs: ["a.img": logs], consistency: .crash, cut: 2)
        try store.commit(vm: "vm", logs: ["a.img": logs], consistency: .crash, cut: 2)
        #expect(try store.points("vm").map(\.id) == [1, 2, 3]) // the resend skips what point 2 holds

        // The crash mid-merge: point 1 expired and dropped from the catalog, its log and the first
        // records of point 2's merged into the base, the catalog still saying the base holds the
        // initial copy.
        var catalog = try store.catalog("vm")
        catalog.points.removeFirst()
        try catalog.save(store.catalogPath("vm"))
        try DirectoryStore.replay(try store.redoLogs("vm", disk: "a.img", after: 0, through: 1), onto: store.basePath("vm", "a.img"))
        let base = try FileDescriptor.open(store.basePath("vm", "a.img"), O_RDWR)
        var applied = 0
        _ = try LogScanner.scan(try store.redoLogs("vm", disk: "a.img", after: 1, through: 2)[0]) { header, data in
            guard applied < 2 else { return }
            try LogApplier.applyRecord(header, data, to: base)
            applied += 1
        }
        base.close()
        for (id, expected) in [(2, atPoint2), (3, atPoint2)] {
            try store.export(vm: "vm", point: .id(id), disk: "a.img", to: dir + "/p\(id)")
            #expect(try read(dir + "/p\(id)") == expected, "point \(id) after a torn merge")
            let p = try #require(try store.points("vm").first { $0.id == id })
            try FileSystem.mkdirs(dir + "/fo\(id)")
            let d = try FailoverDisk(store: store, vm: "vm", disk: "a.img", point: p, directory: dir + "/fo\(id)")
            var bytes = [UInt8](repeating: 0, count: Int(d.size))
            _ = try bytes.withUnsafeMutableBytes { try d.read(into: $0.baseAddress!, count: $0.count, offset: 0) }
            #expect(bytes == expected, "failed-over disk at point \(id) after a torn merge")
        }
        // The next prune merges again and finishes it.
        try store.prune(vm: "vm", retentionSeconds: 0.000001, nowNanos: Clock.nowNanos() + 1)
        #expect(try store.points("vm").map(\.id) == [3])
        #expect(try store.catalog("vm").baseThrough == 3)
        #expect(try read(store.basePath("vm", "a.img")) == atPoint2)
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/latest")
        #expect(try read(dir + "/latest") == atPoint2)
    }

    /// Logs damaged on the way (a flipped bit, a torn copy) are refused before anything
    /// changes; the same logs sent again intact commit.
    @Test func damagedShippedLogsAreRefusedAndTheResendCommits() throws {
        defer { cleanup() }
        try fill(disks + "/a.img", size: 128 << 10, seed: 5)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        let set = try DiskSet.open(directory: disks)
        var shipped = Set<String>()
        try write(set.images[0], 7, count: 20_000, at: 3000)
        _ = try set.rotate()
        let logs = try sealedLogs("a.img", after: &shipped)
        try set.close()
        let base = try read(store.basePath("vm", "a.img"))
        let catalog = try read(store.catalogPath("vm"))
        let original = try read(logs[0])
        // Every byte of the first record's data, flipped one at a time in a sample, and torn copies.
        var damaged: [[UInt8]] = []
        for at in stride(from: 512 + 48, to: original.count - 100, by: 997) {
            var copy = original
            copy[at] ^= 0x10
            damaged.append(copy)
        }
        damaged.append(Array(original.prefix(original.count - 1)))
        damaged.append(Array(original.prefix(512 + 48 + 100)))
        for (n, bytes) in damaged.enumerated() {
            let path = dir + "/incoming-\(n).hrl"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self, "damaged copy \(n) was accepted") {
                try store.commit(vm: "vm", logs: ["a.img": [path]], consistency: .crash, cut: 1)
            }
            #expect(try read(store.basePath("vm", "a.img")) == base, "damaged copy \(n) changed the base")
            #expect(try read(store.catalogPath("vm")) == catalog)
            #expect(try FileSystem.list(storeDir + "/vm/points").isEmpty, "damaged copy \(n) left a point behind")
        }
        #expect(try store.points("vm").isEmpty)
        try store.commit(vm: "vm", logs: ["a.img": logs], consistency: .crash, cut: 1)
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/latest")
        #expect(try read(dir + "/latest") == read(disks + "/a.img"))
    }

    @Test func zlibFramesRoundTripAndRefuseDamage() throws {
        defer { cleanup() }
        let src = dir + "/src", z = dir + "/src.z", back = dir + "/back"
        let text = (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 / 7) % 26 + 97) } + (0..<5_000_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        try Data(text).write(to: URL(fileURLWithPath: src))
        let size = try ZlibFrames.compress(src, to: z)
        #expect(size < Int64(text.count))
        try ZlibFrames.decompress(z, to: back)
        #expect(try read(back) == text)
        var damaged = try read(z)
        damaged[100] ^= 0xff
        try Data(damaged).write(to: URL(fileURLWithPath: z))
        #expect(throws: ReplicaError.self) { try ZlibFrames.decompress(z, to: back) }
        try Data(damaged.prefix(50)).write(to: URL(fileURLWithPath: z))
        #expect(throws: ReplicaError.self) { try ZlibFrames.decompress(z, to: back) }
    }

    @Test func refusesBrokenChainsForeignLogsAndUnknownNames() throws {
        defer { cleanup() }
        try fill(disks + "/a.img", size: 64 << 10, seed: 4)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        #expect(throws: ReplicaError("VM vm already has a replica in \(store.root)")) {
            try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        }
        let set = try DiskSet.open(directory: disks)
        var shipped = Set<String>()
        for i in 0..<3 {
            try write(set.images[0], UInt8(i), count: 100, at: Int64(i * 100))
            _ = try set.rotate()
        }
        try set.close()
        let logs = try sealedLogs("a.img", after: &shipped)
        try store.commit(vm: "vm", logs: ["a.img": [logs[0]]], consistency: .crash, cut: 1)
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/before")
        let before = try read(dir + "/before")
        #expect(throws: ReplicaError.self) { try store.commit(vm: "vm", logs: ["a.img": [logs[2]]], consistency: .crash, cut: 3) }
        #expect(throws: ReplicaError("disk c.img is not part of VM vm")) {
            try store.commit(vm: "vm", logs: ["c.img": [logs[1]]], consistency: .crash, cut: 2)
        }
        #expect(throws: ReplicaError("unknown VM nope in target store \(store.root)", code: .unknownVM)) { try store.points("nope") }
        #expect(throws: ReplicaError("bad recovery point 'yesterday': use an id, latest or latest-app")) {
            try PointSelector("yesterday")
        }
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/after")
        #expect(try read(dir + "/after") == before)
        #expect(try store.points("vm").count == 1)
    }
}
