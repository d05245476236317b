import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// Issue 16, findings 4, 11 and 12 without a mount: crafted logs with valid checksums and
/// absurd numbers, durations and times out of range, a plan nested 200,000 deep. Each used to
/// trap (arithmetic overflow, a conversion out of range) or overflow the stack.
@Suite(.timeLimit(.minutes(2)))
struct InputLimitsTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/rfs-limits-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// A log made with the project's own encoders (every checksum valid): `records` are
    /// (type, lsn offset from the first LSN, offset, extent, data).
    static func craftedLog(firstLSN: UInt64 = 1, sequence: UInt64 = 1, imageSize: UInt64 = 1 << 20,
                           records: [(RecordType, UInt64, UInt64, UInt64, [UInt8])]) -> [UInt8] {
        let header = LogHeader(imageName: "d.img", chainID: [UInt8](repeating: 7, count: 16), sequence: sequence,
                               firstLSN: firstLSN, createdNanos: 1, imageSize: imageSize)
        var bytes = header.encode()
        for (type, lsn, offset, extent, data) in records {
            let rh = RecordHeader(type: type, lsn: firstLSN &+ lsn, offset: offset, extent: extent,
                                  dataLength: UInt32(data.count), dataCRC: Checksum.crc32c(data))
            bytes += rh.encode() + data
        }
        return bytes
    }

    /// The crafted cases of finding 11, each as a whole log.
    static let craftedCases: [(name: String, bytes: [UInt8])] = [
        ("write offset near 2^64", craftedLog(records: [(.write, 0, UInt64.max - 7, 16, [UInt8](repeating: 1, count: 16))])),
        ("zero range of 2^64-1 bytes", craftedLog(records: [(.zero, 0, 4096, UInt64.max, [])])),
        ("set-size 2^64-1", craftedLog(records: [(.setSize, 0, UInt64.max, 0, [])])),
        ("LSN 2^64-1", craftedLog(firstLSN: UInt64.max, records: [(.write, 0, 0, 4, [1, 2, 3, 4])])),
        ("sequence 2^64-1", craftedLog(sequence: UInt64.max, records: [(.write, 0, 0, 4, [1, 2, 3, 4])])),
        ("image size 2^64-1", craftedLog(imageSize: UInt64.max, records: [])),
    ]

    @Test(.timeLimit(.minutes(1)))
    func craftedLogsWithValidChecksumsAreRefusedNotTrapped() throws {
        defer { cleanup() }
        let image = dir + "/d.img"
        try Data([UInt8](repeating: 0x5a, count: 1 << 20)).write(to: URL(fileURLWithPath: image))
        let before = try FileSystem.readFile(image)
        for (name, bytes) in Self.craftedCases {
            let path = dir + "/d.img.000001.hrl"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            // Either the header is refused, or the scan ends in a corrupt tail at the bad record.
            var refused = false
            do {
                let scan = try LogScanner.scan(path)
                if case .corrupt(let offset, let reason) = scan.tail {
                    refused = offset == Int64(LogHeader.size) && !reason.isEmpty
                }
            } catch {
                refused = "\(error)".contains("out of range") || "\(error)".contains("beyond")
            }
            #expect(refused, "\(name): not refused")
            #expect(throws: (any Error).self, "\(name): log apply accepted it") { try LogApplier(paths: [path]).apply(to: image) }
            #expect(try FileSystem.readFile(image) == before, "\(name): the image changed")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aValidLogStillScansAndApplies() throws {
        defer { cleanup() }
        let image = dir + "/d.img"
        try Data([UInt8](repeating: 0, count: 8192)).write(to: URL(fileURLWithPath: image))
        let path = dir + "/d.img.000001.hrl"
        try Data(Self.craftedLog(records: [(.write, 0, 4096, 4, [1, 2, 3, 4]), (.zero, 1, 0, 4096, []),
                                           (.setSize, 2, 8192, 0, [])]))
            .write(to: URL(fileURLWithPath: path))
        let scan = try LogScanner.scan(path)
        #expect(scan.tail == .clean && scan.recordCount == 3)
        try LogApplier(paths: [path]).apply(to: image)
        #expect(Array(try FileSystem.readFile(image)[4096..<4100]) == [1, 2, 3, 4])
    }

    @Test(.timeLimit(.minutes(1)))
    func durationsOutOfRangeAreRefusedAtParse() throws {
        for text in ["1e11", "inf", "infs", "nan", "-5", "-1m", "1e400", "9999999999d", "abc", "+inf"] {
            #expect(throws: ReplicaError.self, "\(text) accepted") { try ReplicationPolicy.seconds(text, what: "--retention") }
        }
        let error = try #require(throws: ReplicaError.self) { try ReplicationPolicy.seconds("1e11", what: "--retention") }
        #expect("\(error)".contains("--retention") && !"\(error)".contains("\n"))
        #expect(try ReplicationPolicy.seconds("24h") == 86400)
        #expect(try ReplicationPolicy.seconds("continuous") == 0)
        #expect(try ReplicationPolicy.seconds("36500d") == 36500 * 86400)
        // Times: far ones are refused, not converted.
        #expect(throws: ReplicaError.self) { try ReplicationPolicy.startTime("9999-12-31T23:59:59Z") }
        #expect(throws: ReplicaError.self) { try TimeLimits.nanos(ofTime: 253402300799, text: "9999-12-31T23:59:59Z") }
        #expect(try TimeLimits.nanos(ofTime: 1_800_000_000, text: "2027") == 1_800_000_000_000_000_000)
        var policy = ReplicationPolicy()
        policy.retention = .infinity
        #expect(throws: ReplicaError.self) { try policy.validate() }
        // A recovery plan may not name a point beyond what a time can hold.
        #expect(!RecoveryPlan.validPoint("9999-12-31T23:59:59Z"))
        #expect(RecoveryPlan.validPoint("2026-11-23T18:30:00Z"))
    }

    @Test(.timeLimit(.minutes(1)))
    func aStoredHugeRetentionPrunesWithoutTrapping() throws {
        defer { cleanup() }
        let disks = dir + "/disks", storeDir = dir + "/store"
        try FileSystem.mkdirs(disks)
        try FileSystem.mkdirs(storeDir)
        try Data([UInt8](repeating: 3, count: 64 << 10)).write(to: URL(fileURLWithPath: disks + "/a.img"))
        let store = try DirectoryStore(root: storeDir)
        try store.create(vm: "vm", seeds: [("a.img", disks + "/a.img")])
        let set = try DiskSet.open(directory: disks)
        let j = try #require(set.journal(named: "a.img"))
        for k in 1...2 {
            try [UInt8](repeating: UInt8(k), count: 4096).withUnsafeBytes { try j.write($0, offset: Int64(k) * 4096) }
            let rotation = try set.rotate()
            let logs = try FileSystem.list(disks).filter { LogName.parse($0) != nil }.map { disks + "/" + $0 }
                .filter { try LogScanner.scan($0).isSealed }
            _ = try store.commit(vm: "vm", logs: ["a.img": logs], consistency: .crash, cut: rotation.cutID,
                                 timeNanos: UInt64(k) * 1_000_000_000)
            for log in logs { try FileSystem.remove(log) }
        }
        try set.close()
        // 1e11 s (3,000 years), infinity and NaN, as a hand-edited policy file could hold.
        for retention in [1e11, 1e300, Double.infinity] {
            #expect(try store.prune(vm: "vm", retentionSeconds: retention).isEmpty)
        }
        // NaN keeps nothing but the latest point, as a retention of zero does.
        #expect(try store.prune(vm: "vm", retentionSeconds: .nan) == [1])
        #expect(TimeLimits.clampedNanos(seconds: 1e11) == UInt64(TimeLimits.maxDurationSeconds * 1e9))
    }

    @Test(.timeLimit(.minutes(1)))
    func aPlanNestedTooDeepIsRefusedBeforeParsing() throws {
        let deep = "name: p\ngroups: " + String(repeating: "[", count: 200_000)
        let error = try #require(throws: ReplicaError.self) { try RecoveryPlan.parse(deep, source: "deep.yaml") }
        #expect("\(error)".contains("deep.yaml:2") && "\(error)".contains("nested deeper"), "\(error)")
        let blocks = "name: p\ngroups:\n" + String(repeating: "- ", count: 100_000) + "x\n"
        #expect(throws: ReplicaError.self) { try RecoveryPlan.parse(blocks, source: "blocks.yaml") }
        // An ordinary plan still parses.
        let plan = try RecoveryPlan.parse("""
            name: p
            target: /srv/store
            mountRoot: /srv/failover
            groups:
              - name: g
                vms: [{name: a}, {name: b, point: latest-app}]
            """)
        #expect(plan.allVMs.map(\.name) == ["a", "b"])
    }
}
