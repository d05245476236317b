import Crypto
import Foundation
import Testing
@testable import ReplicaLog
@testable import ReplicaObjectStore
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaSystem

/// The object store's layout logic over a local directory acting as the bucket
/// (`DirectoryBucket`): logs made by the real write path (ImageJournal) are committed as
/// points and read back by range through the store's cache. Small disks and 16 KiB chunks.
@Suite(.timeLimit(.minutes(3)))
struct ObjectStoreTests {
    let dir: String
    var disks: String { dir + "/disks" }
    let bucket: DirectoryBucket

    init() throws {
        var template = Array("/tmp/s3-store-unit-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try FileSystem.mkdirs(dir + "/disks")
        bucket = try DirectoryBucket(root: dir + "/bucket")
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// A store over the test bucket with a cache directory of its own (`name`).
    func store(_ name: String = "cache", chunkSize: Int = 16 << 10) throws -> ObjectStore {
        try ObjectStore(bucket: bucket, chunkSize: chunkSize, segmentSize: 8 << 10, cacheDirectory: dir + "/" + name, cacheLimit: 1 << 20)
    }

    func fill(_ path: String, size: Int, seed: Int) throws {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ seed &+ $0 >> 9) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func write(_ j: ImageJournal, _ value: UInt8, count: Int, at offset: Int64) throws {
        try [UInt8](repeating: value, count: count).withUnsafeBytes { try j.write($0, offset: offset) }
    }

    func read(_ path: String) throws -> [UInt8] { try FileSystem.readFile(path) }

    func sha(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    /// The whole disk as the store's reader presents it.
    func readPoint(_ store: ObjectStore, _ disk: String, _ point: PointSelector?) throws -> [UInt8] {
        let reader = try store.openPoint(vm: "vm", disk: disk, point: point)
        var bytes = [UInt8](repeating: 0xEE, count: Int(reader.size))
        // Odd-sized pieces cross chunk and segment boundaries.
        var at = 0
        while at < bytes.count {
            let n = min(5000, bytes.count - at)
            try bytes.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress! + at, count: n, offset: Int64(at)) }
            at += n
        }
        return bytes
    }

    /// Sealed logs of `disk` not yet in `shipped`, in sequence order.
    func sealedLogs(_ disk: String, after shipped: inout Set<String>) throws -> [String] {
        let all = try FileSystem.list(disks).filter { LogName.parse($0)?.image == disk }.map { disks + "/" + $0 }.sorted()
        let sealed = try all.filter { try LogScanner.scan($0).isSealed && !shipped.contains($0) }
        shipped.formUnion(sealed)
        return sealed
    }

    /// Seeds a two-disk VM and commits four points (writes, a punched hole, a shrink, a
    /// growth), one an hour; returns each point's disks as the source held them at the cut.
    func fourPoints(_ store: ObjectStore) throws -> [Int: [String: [UInt8]]] {
        try fill(disks + "/a.img", size: 200 << 10, seed: 1)
        try fill(disks + "/b.img", size: 100 << 10, seed: 2)
        // A hole: chunks that read as zeros are not stored.
        let zero = [UInt8](repeating: 0, count: 40 << 10)
        let fd = try FileDescriptor.open(disks + "/a.img", O_WRONLY)
        try zero.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 64 << 10) }
        fd.close()
        let set = try DiskSet.open(directory: disks)
        defer { try? set.close() }
        let a = try #require(set.journal(named: "a.img")), b = try #require(set.journal(named: "b.img"))
        let first = try set.rotate()
        _ = first
        var chains: [String: ChainPosition] = [:]
        for j in [a, b] { chains[j.name] = (j.activeLog.chain, j.activeLog.firstLSN) }
        var shipped = Set(try FileSystem.list(disks).filter { LogName.isLog($0) }.map { disks + "/" + $0 }
            .filter { try LogScanner.scan($0).isSealed })
        try store.seed(vm: "vm", sources: SourceFile.map(["a.img": disks + "/a.img", "b.img": disks + "/b.img"]), chains: chains, progress: nil)
        var expected: [Int: [String: [UInt8]]] = [:]
        for k in 1...4 {
            try write(a, UInt8(k), count: 10_000, at: Int64(k * 7_000))
            try write(a, UInt8(100 + k), count: 3_000, at: 1_000)
            try write(b, UInt8(k), count: 5_000, at: Int64(k * 3_000))
            if k == 2 { try a.fallocate(mode: 0x01 | 0x02, offset: 8192, length: 4096) }
            if k == 3 { try b.setSize(70 << 10) }
            if k == 4 { try a.setSize(300 << 10); try write(a, 9, count: 100, at: (300 << 10) - 50) }
            let rotation = try set.rotate()
            let logs = ["a.img": try sealedLogs("a.img", after: &shipped), "b.img": try sealedLogs("b.img", after: &shipped)]
            let point = try store.commit(vm: "vm", logs: SourceFile.map(logs), consistency: k == 2 ? .app : .crash,
                                         cut: rotation.cutID, timeNanos: UInt64(k) * 3_600_000_000_000)
            #expect(point.id == k)
            expected[k] = ["a.img": try read(disks + "/a.img"), "b.img": try read(disks + "/b.img")]
        }
        return expected
    }

    @Test func everyPointReadsAndExportsAsTheSourceAtItsCut() throws {
        defer { cleanup() }
        let store = try store()
        let expected = try fourPoints(store)
        #expect(try store.points("vm").map(\.consistency) == [.crash, .app, .crash, .crash])
        for k in 1...4 {
            for disk in ["a.img", "b.img"] {
                let out = dir + "/export-\(k)-\(disk)"
                #expect(try store.export(vm: "vm", point: .id(k), disk: disk, to: out).id == k)
                #expect(try read(out) == expected[k]![disk]!, "export of point \(k) disk \(disk)")
                #expect(try readPoint(store, disk, .id(k)) == expected[k]![disk]!, "reader at point \(k) disk \(disk)")
            }
        }
        #expect(try store.export(vm: "vm", point: .latestApp, disk: "a.img", to: dir + "/app").id == 2)
        // A store with a cold cache reads the same from the bucket.
        #expect(try readPoint(try self.store("cold"), "a.img", .latest) == expected[4]!["a.img"]!)
        let differences = try store.verify(vm: "vm", sources: SourceFile.map(["a.img": disks + "/a.img", "b.img": disks + "/b.img"]),
                                           point: nil, blockSize: 4096)
        #expect(differences.values.allSatisfy { $0.isEmpty })
        // Every chunk object holds the bytes its name says; zero chunks were never stored.
        let chunks = bucket.keys.filter { $0.hasPrefix("vms/vm/chunks/") }
        #expect(!chunks.isEmpty)
        for key in chunks { #expect(sha(try read(bucket.path(key))) == String(key.split(separator: "/").last!)) }
        #expect(!chunks.contains { $0.hasSuffix(sha([UInt8](repeating: 0, count: 16 << 10))) })
    }

    /// A commit cut short between its objects and its catalog generation lists no point; the
    /// objects it left are unreferenced and `recover` deletes them; the resend commits.
    @Test func aTornCommitListsNoHalfPointAndRecoverDeletesItsObjects() throws {
        defer { cleanup() }
        let store = try store()
        _ = try fourPoints(store)
        let before = Set(bucket.keys)
        let set = try DiskSet.open(directory: disks)
        let a = try #require(set.journal(named: "a.img"))
        try write(a, 0x55, count: 30_000, at: 5_000)
        _ = try set.rotate()
        // Every sealed log: those committed before are skipped as a resend.
        var none = Set<String>()
        let logs = ["a.img": try sealedLogs("a.img", after: &none)]
        try set.close()
        bucket.failPuts.withLock { $0 = { $0.contains("/catalog/") } }
        #expect(throws: ReplicaError.self) {
            try store.commit(vm: "vm", logs: SourceFile.map(logs), consistency: .crash, cut: 9, timeNanos: 5 * 3_600_000_000_000)
        }
        bucket.failPuts.withLock { $0 = nil }
        #expect(try store.points("vm").map(\.id) == [1, 2, 3, 4])
        let orphans = Set(bucket.keys).subtracting(before)
        #expect(orphans.contains { $0.hasPrefix("vms/vm/logs/00000005/") }, "the torn commit stored no log: \(orphans)")
        try store.recover(vm: "vm")
        #expect(Set(bucket.keys).intersection(orphans).isEmpty, "left after recover: \(Set(bucket.keys).intersection(orphans))")
        let point = try store.commit(vm: "vm", logs: SourceFile.map(logs), consistency: .crash, cut: 9, timeNanos: 5 * 3_600_000_000_000)
        #expect(point.id == 5)
        #expect(try readPoint(store, "a.img", .latest) == read(disks + "/a.img"))
        // Two writers cannot both take a generation.
        var catalog = try store.latestCatalog("vm")
        #expect(throws: ReplicaError.self) { try store.publish(&catalog, after: catalog.generation - 1) }
    }

    /// Retention merges expired points into new chunk objects: every listed point keeps its
    /// bytes (SHA-256 before and after), a reader opened before the merge keeps reading its
    /// point, and only chunks no kept catalog names are deleted.
    @Test func mergeKeepsEveryListedPointsBytes() throws {
        defer { cleanup() }
        let store = try store()
        let expected = try fourPoints(store)
        let shaBefore = try (3...4).map { k in try ["a.img", "b.img"].map { sha(try readPoint(store, $0, .id(k))) } }
        let open = try store.openPoint(vm: "vm", disk: "a.img", point: .id(3))
        let chunksBefore = Set(bucket.keys.filter { $0.hasPrefix("vms/vm/chunks/") })
        let pruned = try store.prune(vm: "vm", retentionSeconds: 5400, nowNanos: 4 * 3_600_000_000_000 + 1)
        #expect(pruned == [1, 2])
        #expect(try store.points("vm").map(\.id) == [3, 4])
        #expect(try store.catalog("vm").baseThrough == 3)
        // A second prune at the same time merges nothing more.
        #expect(try store.prune(vm: "vm", retentionSeconds: 5400, nowNanos: 4 * 3_600_000_000_000 + 1) == [])
        let cold = try self.store("after-merge")
        let shaAfter = try (3...4).map { k in try ["a.img", "b.img"].map { sha(try readPoint(cold, $0, .id(k))) } }
        #expect(shaAfter == shaBefore)
        #expect(shaAfter[0] == [sha(expected[3]!["a.img"]!), sha(expected[3]!["b.img"]!)])
        // Chunks are never rewritten: each still holds what its name says, new ones were added.
        let chunksAfter = Set(bucket.keys.filter { $0.hasPrefix("vms/vm/chunks/") })
        for key in chunksAfter { #expect(sha(try read(bucket.path(key))) == String(key.split(separator: "/").last!)) }
        #expect(!chunksAfter.subtracting(chunksBefore).isEmpty)
        // The reader opened before the merge, its objects now partly deleted, reads its point
        // (from a cache that never saw those objects).
        try FileManager.default.removeItem(atPath: dir + "/cache")
        var bytes = [UInt8](repeating: 0, count: Int(open.size))
        try bytes.withUnsafeMutableBytes { try open.read(into: $0.baseAddress!, count: $0.count, offset: 0) }
        #expect(bytes == expected[3]!["a.img"]!)
        // A failover holds its point: a later prune keeps it and every point after it.
        let five = try store.beginFailover(vm: "vm", point: .id(3), kind: .test, mountpoint: "/mnt/x", sourceDisksDir: nil, workDirectory: dir + "/work")
        #expect(five.point.id == 3)
        #expect(try store.prune(vm: "vm", retentionSeconds: 1, nowNanos: 10 * 3_600_000_000_000) == [])
        #expect(store.failedOverVMs() == ["vm"])
        try store.discardFailover(vm: "vm")
        #expect(store.failoverState("vm") == nil)
        #expect(try store.prune(vm: "vm", retentionSeconds: 1, nowNanos: 10 * 3_600_000_000_000) == [3])
        #expect(try readPoint(cold, "b.img", .latest) == expected[4]!["b.img"]!)
    }

    /// Logs damaged on the way are refused before any object is named; a log object damaged in
    /// the bucket after its commit is detected by its checksum and never read into a disk.
    @Test func corruptLogsAreRefusedAndCorruptObjectsDetected() throws {
        defer { cleanup() }
        let store = try store()
        _ = try fourPoints(store)
        let set = try DiskSet.open(directory: disks)
        var shipped = Set(try FileSystem.list(disks).filter { LogName.isLog($0) }.map { disks + "/" + $0 }
            .filter { try LogScanner.scan($0).isSealed })
        try write(try #require(set.journal(named: "b.img")), 0x77, count: 20_000, at: 1000)
        _ = try set.rotate()
        let log = try #require(try sealedLogs("b.img", after: &shipped).first)
        try set.close()
        var bytes = try read(log)
        bytes[512 + 48 + 500] ^= 0x10
        let damaged = dir + "/damaged.hrl"
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        let catalogs = bucket.keys.filter { $0.contains("/catalog/") }
        #expect(throws: (any Error).self) {
            try store.commit(vm: "vm", logs: ["b.img": [SourceFile(damaged)]], consistency: .crash, cut: 9, timeNanos: 5)
        }
        #expect(bucket.keys.filter { $0.contains("/catalog/") } == catalogs)
        #expect(try store.points("vm").count == 4)
        // A flipped byte in a committed log object.
        let logKey = try #require(bucket.keys.first { $0.hasPrefix("vms/vm/logs/00000004/a.img/") && $0.hasSuffix(".hrl") })
        var object = try read(bucket.path(logKey))
        object[512 + 48 + 10] ^= 0x01 // in the first record's data, a byte the point reads
        try Data(object).write(to: URL(fileURLWithPath: bucket.path(logKey)))
        let cold = try self.store("cold")
        let error = #expect(throws: ReplicaError.self) {
            try cold.export(vm: "vm", point: .id(4), disk: "a.img", to: dir + "/out")
        }
        #expect(error?.description.contains("corrupt or truncated") == true, "\(String(describing: error))")
    }

    @Test func aTruncatedChunkIsDetected() throws {
        defer { cleanup() }
        let store = try store()
        _ = try fourPoints(store)
        let chunk = try #require(bucket.keys.first { $0.hasPrefix("vms/vm/chunks/") })
        let bytes = try read(bucket.path(chunk))
        try Data(bytes.prefix(bytes.count - 100)).write(to: URL(fileURLWithPath: bucket.path(chunk)))
        let cold = try self.store("cold")
        var failures = 0
        for disk in ["a.img", "b.img"] {
            do { try cold.export(vm: "vm", point: .latest, disk: disk, to: dir + "/out-" + disk) } catch {
                #expect("\(error)".contains("corrupt or truncated"))
                failures += 1
            }
        }
        #expect(failures >= 1)
    }

    /// A resync stores the differing blocks as the next point's first log without touching
    /// committed points; a rebase makes a point of the disks as they are.
    @Test func resyncAndRebaseMakeTheNextPointFromTheSource() throws {
        defer { cleanup() }
        let store = try store()
        let expected = try fourPoints(store)
        // The source changes without logs (as after a broken chain).
        let fd = try FileDescriptor.open(disks + "/a.img", O_WRONLY)
        let junk = [UInt8](repeating: 0xAB, count: 9000)
        try junk.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 100_000) }
        fd.close()
        let sources = SourceFile.map(["a.img": disks + "/a.img", "b.img": disks + "/b.img"])
        let catalog = try store.catalog("vm")
        var chains: [String: ChainPosition] = [:]
        for d in catalog.disks { chains[d.name] = (d.chain!, d.nextLSN!) }
        let report = try store.resync(vm: "vm", sources: sources, chains: chains, reason: "test", blockSize: 4096, progress: nil)
        #expect(report.bytesSent > 0 && report.bytesSent < 20_000)
        #expect(try store.resyncMark("vm")?.finished == true)
        #expect(try readPoint(store, "a.img", .id(4)) == expected[4]!["a.img"]!)
        let point = try store.commit(vm: "vm", logs: [:], consistency: .crash, cut: 10, timeNanos: 5 * 3_600_000_000_000)
        #expect(try readPoint(store, "a.img", .id(point.id)) == read(disks + "/a.img"))
        #expect(try store.resyncMark("vm") == nil)
        try fill(disks + "/b.img", size: 90 << 10, seed: 7)
        let (rebased, written) = try store.rebase(vm: "vm", sources: sources, blockSize: 4096)
        #expect(written > 0)
        #expect(try readPoint(store, "b.img", .id(rebased.id)) == read(disks + "/b.img"))
        #expect(try readPoint(store, "b.img", .id(4)) == expected[4]!["b.img"]!)
        #expect(try store.catalog("vm").disks.allSatisfy { $0.chain == nil })
    }

    /// An encrypted store (over a `SealedBucket`) names its content-addressed chunks by a keyed
    /// hash, so listing the bucket does not let anyone confirm a guessed chunk by its SHA-256;
    /// commits, reads and the merge's clean-up work by those names as by plain ones.
    @Test func anEncryptedStoreNamesChunksByAKeyedHash() throws {
        defer { cleanup() }
        let keyPath = dir + "/key"
        try (0..<32).map { _ in UInt8.random(in: 0...255) }.withUnsafeBytes { try FileSystem.writeAtomically(keyPath, $0) }
        chmod(keyPath, 0o600)
        let sealed = SealedBucket(bucket, cipher: try ChunkCipher(keyFile: keyPath), chunkSize: 8 << 10, stagingDirectory: dir + "/staging")
        func store(_ cache: String) throws -> ObjectStore {
            try ObjectStore(bucket: sealed, chunkSize: 16 << 10, segmentSize: 8 << 10, cacheDirectory: dir + "/" + cache, cacheLimit: 1 << 20)
        }
        let encrypted = try store("cache")
        let expected = try fourPoints(encrypted)
        var plainDigests = Set<String>()
        for disks in expected.values {
            for bytes in disks.values {
                for at in stride(from: 0, to: bytes.count, by: 16 << 10) { plainDigests.insert(sha(Array(bytes[at..<min(bytes.count, at + (16 << 10))]))) }
            }
        }
        func chunkNames() -> Set<String> {
            Set(bucket.keys.filter { $0.hasPrefix("vms/vm/chunks/") }.map { String($0.split(separator: "/").last!) })
        }
        let before = chunkNames()
        #expect(!before.isEmpty)
        #expect(before.isDisjoint(with: plainDigests), "chunk objects named by their plaintext SHA-256")
        #expect(try encrypted.prune(vm: "vm", retentionSeconds: 5400, nowNanos: 4 * 3_600_000_000_000 + 1) == [1, 2])
        let after = chunkNames()
        #expect(after.isDisjoint(with: plainDigests))
        #expect(!after.subtracting(before).isEmpty, "the merge stored no new chunk")
        // The clean-up deleted only unreferenced chunks: a cold reader gets every kept point whole.
        let cold = try store("cold")
        for k in 3...4 {
            for disk in ["a.img", "b.img"] { #expect(try readPoint(cold, disk, .id(k)) == expected[k]![disk]!) }
        }
    }
}
