import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore

/// A point opened for a failover reads its redo logs' record headers only; each write
/// record's data is checked against its checksum when first read. A damaged record must
/// still never read as good data.
@Suite(.timeLimit(.minutes(1)))
struct PointViewChecksumTests {
    @Test func aDamagedRedoRecordFailsItsReadNotTheOthers() throws {
        var template = Array("/tmp/rfs-pvsum-XXXXXX".utf8CString)
        let dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disks = dir + "/disks", storeDir = dir + "/store"
        try FileSystem.mkdirs(disks)
        try FileSystem.mkdirs(storeDir)
        try Data(count: 256 << 10).write(to: URL(fileURLWithPath: disks + "/a.img"))
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        let set = try DiskSet.open(directory: disks)
        let j = try #require(set.journal(named: "a.img"))
        try [UInt8](repeating: 7, count: 10_000).withUnsafeBytes { try j.write($0, offset: 4096) }
        try [UInt8](repeating: 9, count: 5_000).withUnsafeBytes { try j.write($0, offset: 100_000) }
        let rotation = try set.rotate()
        let sealed = try FileSystem.list(disks).filter { LogName.parse($0)?.image == "a.img" }.map { disks + "/" + $0 }
            .filter { try LogScanner.scan($0).isSealed }
        let point = try store.commit(vm: "vm", logs: ["a.img": sealed], consistency: .crash, cut: rotation.cutID, timeNanos: Clock.nowNanos())
        try set.close()

        // Flip one byte in the data of the write at 4096, in the store's redo log.
        let redo = try #require(try store.redoLogs("vm", disk: "a.img", after: 0, through: point.id).first)
        let bytes: [UInt8] = try FileSystem.readFile(redo)
        var dataAt = -1
        try bytes.withUnsafeBytes { all in
            _ = try LogScanner.scan(all, path: redo) { header, data in
                if header.type == .write && header.offset == 4096 { dataAt = data.baseAddress! - all.baseAddress! + 100 }
            }
        }
        #expect(dataAt > 0)
        let fd = try FileDescriptor.open(redo, O_RDWR)
        var flipped = bytes[dataAt] ^ 0xff
        _ = try fd.pwrite(&flipped, count: 1, offset: Int64(dataAt))
        fd.close()
        #expect(try LogScanner.scan(redo).tail != .clean, "the damage is not in a record's data")

        // Opening does not read the data; the good record reads, the damaged one throws.
        let view = try PointView(store: store, vm: "vm", disk: "a.img", pointID: point.id)
        var good = [UInt8](repeating: 0, count: 5_000)
        try good.withUnsafeMutableBytes { try view.read(into: $0.baseAddress!, count: 5_000, offset: 100_000) }
        #expect(good == [UInt8](repeating: 9, count: 5_000))
        var bad = [UInt8](repeating: 0, count: 4096)
        #expect(throws: ReplicaError.self) {
            try bad.withUnsafeMutableBytes { try view.read(into: $0.baseAddress!, count: 4096, offset: 8192) }
        }
        // Asked again, it throws again (a failed check is not remembered as good).
        #expect(throws: ReplicaError.self) {
            try bad.withUnsafeMutableBytes { try view.read(into: $0.baseAddress!, count: 16, offset: 4096) }
        }
    }
}
