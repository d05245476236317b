import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// Resync into the target store without a mount: the source images are changed behind the
/// journal's back, the replica is resynced block by block, the next commit makes a point
/// equal to the source, and every earlier point still exports byte for byte; a resync that
/// fails midway is dropped and leaves the last point as it was.
@Suite(.timeLimit(.minutes(2)))
struct StoreResyncTests {
    let dir: String
    var disks: String { dir + "/disks" }
    var storeDir: String { dir + "/store" }

    init() throws {
        var template = Array("/tmp/rfs-sresync-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try FileSystem.mkdirs(disks)
        try FileSystem.mkdirs(storeDir)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func fill(_ path: String, size: Int, seed: Int) throws {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: ($0 &* 31 &+ seed) ^ ($0 >> 9)) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func write(_ j: ImageJournal, _ value: UInt8, count: Int, at offset: Int64) throws {
        try [UInt8](repeating: value, count: count).withUnsafeBytes { try j.write($0, offset: offset) }
    }

    /// Changes an image directly, as a tool writing to it outside the mount would.
    func scribble(_ path: String, _ value: UInt8, count: Int, at offset: Int64) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        defer { fd.close() }
        let bytes = [UInt8](repeating: value, count: count)
        try bytes.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: count, offset: offset) }
    }

    func read(_ path: String) throws -> [UInt8] { try FileSystem.readFile(path) }

    func commitSealed(_ store: DirectoryStore, _ set: DiskSet, cut: UInt64) throws -> RecoveryPoint {
        var logs: [String: [String]] = [:]
        for j in set.images { logs[j.name] = try j.sealedLogs() }
        let point = try store.commit(vm: "vm", logs: logs, consistency: .crash, cut: cut)
        for path in logs.values.joined() { try FileSystem.remove(path) }
        return point
    }

    func chains(_ set: DiskSet) -> [String: (chain: String, nextLSN: UInt64)] {
        var c: [String: (chain: String, nextLSN: UInt64)] = [:]
        for j in set.images { c[j.name] = (j.activeLog.chain, j.activeLog.firstLSN) }
        return c
    }

    func exports(_ store: DirectoryStore, _ ids: [Int]) throws -> [Int: [UInt8]] {
        var out: [Int: [UInt8]] = [:]
        for id in ids {
            try store.export(vm: "vm", point: .id(id), disk: "a.img", to: dir + "/x")
            out[id] = try read(dir + "/x") + [0xEE] + (try { () throws -> [UInt8] in
                try store.export(vm: "vm", point: .id(id), disk: "b.img", to: dir + "/y")
                return try read(dir + "/y")
            }())
        }
        return out
    }

    @Test func resyncKeepsOldPointsAndTheNextCommitIsConsistent() throws {
        defer { cleanup() }
        let bs = 16 << 10
        try fill(disks + "/a.img", size: 1 << 20, seed: 1)
        try fill(disks + "/b.img", size: 512 << 10, seed: 2)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img"), ("b.img", disks + "/b.img")])
        let set = try DiskSet.open(directory: disks)
        let a = set.images[0], b = set.images[1]
        try write(a, 1, count: 50_000, at: 10_000)
        _ = try set.rotate()
        _ = try commitSealed(store, set, cut: 1)
        try write(b, 2, count: 70_000, at: 100_000)
        try a.setSize(900 << 10)
        _ = try set.rotate()
        _ = try commitSealed(store, set, cut: 2)
        let before = try exports(store, [1, 2])
        #expect(try before[2]! == read(disks + "/a.img") + [0xEE] + read(disks + "/b.img"))

        // Behind the journal's back: three blocks of a changed, b grown by 100 KiB.
        try scribble(disks + "/a.img", 0x55, count: 100, at: 5 * Int64(bs) + 7)
        try scribble(disks + "/a.img", 0x66, count: Int(bs) + 1, at: 40 * Int64(bs))
        try scribble(disks + "/b.img", 0x77, count: 100 << 10, at: 512 << 10)
        _ = try set.rotate()
        let report = try store.resync(vm: "vm", sources: ["a.img": disks + "/a.img", "b.img": disks + "/b.img"],
                                      chains: chains(set), reason: "test", blockSize: bs)
        print("store resync: sent \(report.bytesSent) of \(report.diskBytes) bytes, compared \(report.bytesCompared)")
        #expect(report.disks["a.img"]!.differingBlocks == 3)
        #expect(report.bytesSent == 3 * Int64(bs) + (100 << 10))
        #expect(try store.resyncMark("vm")?.finished == true)
        // Half way between resync and the next point, old points (and latest) still export.
        #expect(try exports(store, [1, 2]) == before)
        #expect(throws: ReplicaError("resync of VM vm: disk a.img has no source")) {
            try store.resync(vm: "vm", sources: [:], chains: [:])
        }
        #expect(try exports(store, [1, 2]) == before)

        // Writes after the cut, then the next ordinary commit: a consistent point, mark cleared.
        try write(a, 9, count: 20_000, at: 0)
        try write(b, 8, count: 1000, at: 600 << 10)
        _ = try set.rotate()
        let point = try commitSealed(store, set, cut: 3)
        #expect(point.id == 3)
        #expect(try store.resyncMark("vm") == nil)
        let after = try exports(store, [1, 2, 3])
        #expect(try after[3]! == read(disks + "/a.img") + [0xEE] + read(disks + "/b.img"))
        #expect(after[1] == before[1] && after[2] == before[2])
        // A failed-over disk at each point reads through the redo logs (the resync's before point 3's), as an export does.
        for id in [1, 2, 3] {
            let p = try #require(try store.points("vm").first { $0.id == id })
            try FileSystem.mkdirs(dir + "/fo-\(id)")
            let d = try FailoverDisk(store: store, vm: "vm", disk: "a.img", point: p, directory: dir + "/fo-\(id)")
            var bytes = [UInt8](repeating: 0, count: Int(d.size))
            _ = try bytes.withUnsafeMutableBytes { try d.read(into: $0.baseAddress!, count: $0.count, offset: 0) }
            try store.export(vm: "vm", point: .id(id), disk: "a.img", to: dir + "/fx-\(id)")
            #expect(try bytes == read(dir + "/fx-\(id)"), "failed-over a.img at point \(id)")
        }
        // Pruning merges the older points and the resync into the base; the latest still exports.
        try store.prune(vm: "vm", retentionSeconds: 0.000001, nowNanos: Clock.nowNanos() + 1)
        #expect(try store.points("vm").map(\.id) == [3])
        #expect(try FileSystem.list(storeDir + "/vm/points").isEmpty)
        #expect(try exports(store, [3]) == [3: after[3]!])
        try set.close()
    }

    @Test func aResyncThatFailsMidwayRollsBack() throws {
        defer { cleanup() }
        try fill(disks + "/a.img", size: 256 << 10, seed: 3)
        try fill(disks + "/b.img", size: 256 << 10, seed: 4)
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img"), ("b.img", disks + "/b.img")])
        let set = try DiskSet.open(directory: disks)
        try write(set.images[0], 1, count: 5000, at: 0)
        _ = try set.rotate()
        _ = try commitSealed(store, set, cut: 1)
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/before")
        let latestA = try read(dir + "/before")
        let catalogBefore = try store.catalog("vm")
        try scribble(disks + "/a.img", 0x42, count: 200 << 10, at: 10_000)
        try FileDescriptor.open(disks + "/a.img", O_WRONLY).truncate(to: 100 << 10)
        _ = try set.rotate()
        // a.img resyncs (shrinking it), then b.img's source is gone: the resync stops halfway.
        #expect(throws: SystemError.self) {
            try store.resync(vm: "vm", sources: ["a.img": disks + "/a.img", "b.img": dir + "/gone.img"], chains: chains(set))
        }
        #expect(try store.resyncMark("vm")?.finished == false)
        #expect(try FileSystem.list(storeDir + "/vm/points/00000002.resync").contains("a.img.000001.hrl"))
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/x")
        #expect(try read(dir + "/x") == latestA)
        // Recovery drops it, as after a crash: nothing else changed.
        try store.recover(vm: "vm")
        #expect(try store.resyncMark("vm") == nil)
        #expect(try store.catalog("vm").disks.map(\.nextLSN) == catalogBefore.disks.map(\.nextLSN))
        #expect(try FileSystem.list(storeDir + "/vm/points").allSatisfy { !$0.hasSuffix(".resync") })
        try store.export(vm: "vm", point: .latest, disk: "a.img", to: dir + "/x")
        #expect(try read(dir + "/x") == latestA)
        try set.close()
    }
}
