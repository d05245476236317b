import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
import CLinux

/// The HRL format without a mount: encode, scan, tear, corrupt, apply.
@Suite(.timeLimit(.minutes(2)))
struct HRLFormatTests {
    let dir: String

    init() throws {
        let template = "/tmp/rfs-core-XXXXXX"
        var bytes = Array(template.utf8CString)
        let p = bytes.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        dir = String(cString: p!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func makeImage(_ name: String, size: Int, seed: UInt8 = 0) throws -> String {
        let path = dir + "/" + name
        var data = [UInt8](repeating: 0, count: size)
        for i in 0..<size { data[i] = UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed)) }
        try Data(data).write(to: URL(fileURLWithPath: path))
        return path
    }

    func write(_ journal: ImageJournal, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try journal.write($0, offset: offset) }
    }

    @Test func crc32cMatchesTheStandardCheckValueInHardwareAndSoftware() {
        let check = Array("123456789".utf8)
        #expect(Checksum.crc32c(check) == 0xE306_9283)
        var big = [UInt8](repeating: 0, count: 100_003)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 8) }
        let sw = big.withUnsafeBytes { rfs_crc32c_sw(0, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count) }
        #expect(Checksum.crc32c(big) == sw)
        // Chaining: checksum of a whole equals the checksum continued over its parts.
        let first = big.withUnsafeBytes { Checksum.crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<5001])) }
        let whole = big.withUnsafeBytes { Checksum.crc32c(UnsafeRawBufferPointer(rebasing: $0[5001...]), seed: first) }
        #expect(whole == sw)
    }

    @Test func crc32cOfThreeStreamsMatchesOneStreamAtEveryBlockBoundary() {
        // The hardware path runs three streams over 8 KiB and 256-byte blocks and combines them;
        // lengths and start offsets around those block sizes must give the byte-by-byte result.
        var big = [UInt8](repeating: 0, count: (1 << 20) + 64)
        var x: UInt32 = 2463534242
        for i in big.indices { x ^= x << 13; x ^= x >> 17; x ^= x << 5; big[i] = UInt8(truncatingIfNeeded: x) }
        let lengths = [0, 1, 7, 8, 255, 767, 768, 769, 3 * 256 + 8, 24575, 24576, 24577, 24576 + 768 + 13,
                       49152 + 5, 1 << 20, (1 << 20) + 48]
        big.withUnsafeBytes { raw in
            for start in [0, 3, 48, 80] {
                for n in lengths where start + n <= raw.count {
                    let p = raw.baseAddress!.advanced(by: start).assumingMemoryBound(to: UInt8.self)
                    #expect(rfs_crc32c(0x1234_5678, p, n) == rfs_crc32c_sw(0x1234_5678, p, n), "start \(start) length \(n)")
                }
            }
        }
    }

    @Test func preallocatedLogSpaceStaysPastTheSizeAndIsGivenBackBySeal() throws {
        defer { cleanup() }
        let path = dir + "/" + LogName.make(image: "p.img", sequence: 1)
        let log = try ChangeLog.create(path: path, header: LogHeader(imageName: "p.img", chainID: Array(0..<16),
                                                                     sequence: 1, firstLSN: 1, createdNanos: 1, imageSize: 1 << 30))
        let data = [UInt8](repeating: 0xA5, count: 256 << 10)
        for i in 0..<12 {
            try data.withUnsafeBytes { try log.appendWrite($0, offset: UInt64(i) << 18, dataCRC: Checksum.crc32c($0)) }
        }
        var st = try FileSystem.stat(path)
        // Appends fill space allocated ahead of them; the file's size is only what was appended.
        #expect(Int64(st.st_size) == log.end)
        #expect(Int64(st.st_blocks) * 512 > log.end)
        #expect(try LogScanner.scan(path).tail == .clean)
        try log.seal(reason: .cleanShutdown, cutID: 1)
        st = try FileSystem.stat(path)
        #expect(Int64(st.st_size) == log.end)
        #expect(Int64(st.st_blocks) * 512 < log.end + (64 << 10))
        let scan = try LogScanner.scan(path)
        #expect(scan.tail == .clean && scan.isSealed && scan.recordCount == 12)
    }

    @Test func headerRoundTripAndRejection() throws {
        defer { cleanup() }
        let h = LogHeader(imageName: "vm1-os.img", chainID: Array(0..<16), sequence: 7, firstLSN: 99,
                          createdNanos: 123, imageSize: 1 << 30)
        var bytes = h.encode()
        #expect(bytes.count == LogHeader.size)
        #expect(try bytes.withUnsafeBytes { try LogHeader.decode($0, path: "x") } == h)
        bytes[100] ^= 1 // a flipped bit anywhere in the header is caught
        #expect(throws: ReplicaError.self) { try bytes.withUnsafeBytes { try LogHeader.decode($0, path: "x") } }
        #expect(LogName.make(image: "vm1-os.img", sequence: 1) == "vm1-os.img.000001.hrl")
        let parsed = try #require(LogName.parse("vm1-os.img.000001.hrl"))
        #expect(parsed.image == "vm1-os.img" && parsed.sequence == 1)
        #expect(LogName.parse("vm1.img") == nil && LogName.parse(".000001.hrl") == nil)
    }

    @Test func journalRotateCloseAndReplay() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = try makeImage("disks/a.img", size: 1 << 20)
        let base = try makeImage("base.img", size: 1 << 20)
        let set = try DiskSet.open(directory: disks)
        let j = try #require(set.journal(named: "a.img"))
        try write(j, Array(repeating: 0xAB, count: 5000), at: 4096)
        let r1 = try set.rotate()
        #expect(r1.cutID == 1 && r1.sealed.count == 1)
        try write(j, Array(repeating: 0xCD, count: 100), at: 4000)
        try j.setSize(2 << 20)
        try j.fallocate(mode: 0x02 | 0x01, offset: 8192, length: 1024) // punch hole, keep size
        try write(j, Array(repeating: 0xEE, count: 10), at: (2 << 20) - 5)
        try j.sync(dataOnly: false)
        try set.close()
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        #expect(logs.count == 2)
        let scans = try logs.map { try LogScanner.scan($0) }
        #expect(scans.allSatisfy { $0.isSealed && $0.tail == .clean })
        #expect(scans[1].header.firstLSN == scans[0].nextLSN)
        #expect(scans[1].sizeChanges == [2 << 20])
        try LogApplier(paths: logs.reversed()).apply(to: base)
        #expect(try FileSystem.readFile(base) == FileSystem.readFile(image))
    }

    /// Four threads write overlapping ranges while rotations cut the log: the replayed logs
    /// must equal the image, so the log order matched the image order for every overlap.
    @Test func concurrentOverlappingWritesReplayInImageOrder() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = try makeImage("disks/a.img", size: 1 << 20)
        let base = try makeImage("base.img", size: 1 << 20)
        let set = try DiskSet.open(directory: disks)
        let journal = set.images[0]
        // Stall some writers between their log append and their image write. The writes each
        // worker makes follow the seed; the interleaving of the threads does not.
        let seed = TestSeed.make()
        let stalls = SharedRandom(seed: seed)
        journal.beforeImageWrite = { if stalls.next() % 3 == 0 { usleep(300) } }
        DispatchQueue.concurrentPerform(iterations: 5) { worker in
            var rng = SplitMix64(seed: seed &+ UInt64(worker + 1))
            for i in 0..<2000 {
                if worker == 4 {
                    if i % 200 == 0 { _ = try? set.rotate() }
                    continue
                }
                // A small hot region, so that writes overlap constantly.
                let length = Int(rng.next() % 65_536) + 1
                let offset = Int64(rng.next() % UInt64((256 << 10) - length))
                let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: worker * 64 + i), count: length)
                try? write(journal, bytes, at: offset)
            }
        }
        try set.close()
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        #expect(logs.count == 11)
        let result = try LogApplier(paths: logs).apply(to: base)
        #expect(result.dataBytes > 0)
        #expect(try FileSystem.readFile(base) == FileSystem.readFile(image))
    }

    /// A write logged after an overlapping write still in flight must not reach the image first.
    @Test func anOverlappingWriteWaitsForTheEarlierOneInFlight() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = try makeImage("disks/a.img", size: 65536)
        let base = try makeImage("base.img", size: 65536)
        let set = try DiskSet.open(directory: disks)
        let journal = set.images[0]
        final class Once: @unchecked Sendable { let lock = Lock(); var fired = false }
        let once = Once()
        let firstInFlight = DispatchSemaphore(value: 0)
        journal.beforeImageWrite = {
            let first = once.lock.withLock { () -> Bool in defer { once.fired = true }; return !once.fired }
            if first {
                firstInFlight.signal()
                usleep(100_000) // the first writer stalls between its log append and its image write
            }
        }
        let done = DispatchGroup()
        done.enter()
        DispatchQueue.global().async {
            try? self.write(journal, [UInt8](repeating: 0xAA, count: 8192), at: 0)
            done.leave()
        }
        firstInFlight.wait()
        try write(journal, [UInt8](repeating: 0xBB, count: 8192), at: 4096)
        done.wait()
        try set.close()
        let bytes = try FileSystem.readFile(image)
        #expect(bytes[0..<4096].allSatisfy { $0 == 0xAA } && bytes[4096..<12288].allSatisfy { $0 == 0xBB })
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        try LogApplier(paths: logs).apply(to: base)
        #expect(try FileSystem.readFile(base) == bytes)
    }

    @Test func tornTailIsCutAtRecoveryAndCorruptionIsRefused() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        _ = try makeImage("disks/a.img", size: 65536)
        let base = try makeImage("base.img", size: 65536)
        var set: DiskSet? = try DiskSet.open(directory: disks)
        for i in 0..<10 { try write(set!.images[0], Array(repeating: UInt8(i), count: 1000), at: Int64(i * 3000)) }
        let log = set!.images[0].state.activeLog
        set = nil // a crash: no seal, lock released
        // Tear the last record: drop its last 10 bytes.
        let size = try FileSystem.stat(log).st_size
        #expect(truncate(log, size - 10) == 0)
        let scan = try LogScanner.scan(log)
        guard case .torn = scan.tail else { Issue.record("expected a torn tail, got \(scan.tail)"); return }
        #expect(scan.recordCount == 9)
        #expect(throws: ReplicaError.self) { try LogApplier(paths: [log]) }
        set = try DiskSet.open(directory: disks)
        #expect(set!.images[0].recoveredFromCrash)
        let recovered = try LogScanner.scan(log)
        #expect(recovered.tail == .clean && recovered.seal?.reason == .recovered && recovered.recordCount == 10)
        #expect(recovered.markers.first?.marker.kind == .uncleanShutdown)
        try set!.close()
        set = nil
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        try LogApplier(paths: logs).apply(to: base)
        let replayed = try FileSystem.readFile(base)
        #expect(replayed[8 * 3000] == 8 && replayed[9 * 3000 + 999] != 9) // the torn write is not applied

        // Flip a bit in the middle of the first log: valid records follow, so it is corruption.
        var bytes = try FileSystem.readFile(logs[0])
        bytes[LogHeader.size + RecordHeader.size + 10] ^= 0x40
        let damaged = dir + "/damaged.hrl"
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        guard case .corrupt(let offset, _) = try LogScanner.scan(damaged).tail else {
            Issue.record("expected corruption"); return
        }
        #expect(offset == Int64(LogHeader.size))
    }

    /// A daemon killed inside a rotation leaves the next log with only its header and the
    /// previous one unsealed: the next mount drops the empty log and recovers the previous.
    @Test func aRotationInterruptedByACrashRecovers() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        let image = try makeImage("disks/a.img", size: 65536)
        let base = try makeImage("base.img", size: 65536)
        var set: DiskSet? = try DiskSet.open(directory: disks)
        try write(set!.images[0], [1, 2, 3], at: 100)
        let active = set!.images[0].activeLog
        set = nil // killed
        _ = try ChangeLog.create(path: disks + "/" + LogName.make(image: "a.img", sequence: active.sequence + 1),
                                 header: LogHeader(imageName: "a.img", chainID: try LogScanner.scan(disks + "/a.img.000001.hrl").header.chainID,
                                                   sequence: active.sequence + 1, firstLSN: 4, createdNanos: 0, imageSize: 65536))
        set = try DiskSet.open(directory: disks)
        #expect(set!.images[0].recoveredFromCrash)
        try write(set!.images[0], [9], at: 0)
        try set!.close()
        set = nil
        let logs = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }
        #expect(logs.count == 2)
        try LogApplier(paths: logs).apply(to: base)
        #expect(try FileSystem.readFile(base) == FileSystem.readFile(image))
    }

    @Test func applyRefusesGapsForeignAndDuplicates() throws {
        defer { cleanup() }
        for name in ["a", "b"] {
            let disks = dir + "/\(name)"
            try FileSystem.mkdirs(disks)
            _ = try makeImage("\(name)/\(name).img", size: 65536)
            let set = try DiskSet.open(directory: disks)
            for i in 0..<3 {
                try write(set.images[0], [UInt8(i)], at: Int64(i))
                _ = try set.rotate()
            }
            try set.close()
        }
        let a = try FileSystem.list(dir + "/a").filter(LogName.isLog).map { dir + "/a/" + $0 }
        let b = try FileSystem.list(dir + "/b").filter(LogName.isLog).map { dir + "/b/" + $0 }
        #expect(a.count == 4)
        #expect(throws: ReplicaError("gap in log sequence: 1 is followed by 3; missing a.img.000002.hrl")) {
            try LogApplier(paths: [a[0], a[2]])
        }
        #expect(throws: ReplicaError.self) { try LogApplier(paths: [a[0], b[1]]) }
        #expect(throws: ReplicaError.self) { try LogApplier(paths: [a[0], a[0]]) }
        #expect(throws: ReplicaError.self) { try LogApplier(paths: []) }
        var rng = SplitMix64(seed: TestSeed.make())
        _ = try LogApplier(paths: a.shuffled(using: &rng))
    }

    /// One record as the reader hands it out: its header (kind, LSN, image offset, length,
    /// stored data CRC) and the CRC-32C of the data bytes it passed along.
    struct ReadRecord: Equatable, CustomStringConvertible {
        var header: RecordHeader
        var dataCRC: UInt32
        var description: String {
            "\(header.type) lsn \(header.lsn) offset \(header.offset) extent \(header.extent) length \(header.dataLength) crc \(String(dataCRC, radix: 16))"
        }
    }

    /// Scans `bytes` as a log and returns the scan with every record the reader passed on.
    func readRecords(_ bytes: [UInt8]) throws -> (scan: LogScan, records: [ReadRecord]) {
        var records: [ReadRecord] = []
        let scan = try bytes.withUnsafeBytes {
            try LogScanner.scan($0, path: "m") { rh, data in records.append(ReadRecord(header: rh, dataCRC: Checksum.crc32c(data))) }
        }
        return (scan, records)
    }

    /// A seeded mutation test of the reader: truncations, bit flips and splices of a real log
    /// never crash it, and every mutated log is either refused or reads back as an exact prefix
    /// of the original records (kind, LSN, offset, length and data CRC of each, in order).
    @Test func mutatedLogsNeverCrashTheReader() throws {
        defer { cleanup() }
        let disks = dir + "/disks"
        try FileSystem.mkdirs(disks)
        _ = try makeImage("disks/a.img", size: 1 << 16)
        let set = try DiskSet.open(directory: disks)
        for i in 0..<40 { try write(set.images[0], Array(repeating: UInt8(i), count: 1 + i * 37), at: Int64(i * 997)) }
        try set.images[0].mark(Marker(kind: .appConsistent, cutID: 5, timeNanos: 1, label: "fsfreeze"))
        try set.close()
        let log = try FileSystem.list(disks).filter(LogName.isLog).map { disks + "/" + $0 }[0]
        let original = try FileSystem.readFile(log)
        let (clean, originalRecords) = try readRecords(original)
        #expect(clean.recordCount == 42 && clean.isSealed && clean.markers.count == 2)
        // Every record, the seal included, is passed on; the writes carry the bytes written.
        #expect(originalRecords.count == 43 && originalRecords.last?.header.type == .seal)
        #expect(originalRecords.filter { $0.header.type == .write }.count == 40)
        let seed = TestSeed.make()
        var rng = SplitMix64(seed: seed)
        var refused = 0, prefixes = 0, shorter = 0
        for round in 0..<3000 {
            var bytes = original
            switch round % 4 {
            case 0: bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8))
            case 1: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            case 2:
                let at = Int(rng.next() % UInt64(bytes.count))
                let n = Int(rng.next() % 64)
                for i in at..<min(bytes.count, at + n) { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
            default:
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes.insert(contentsOf: original[0..<min(original.count, Int(rng.next() % 200))], at: at)
            }
            let read: (scan: LogScan, records: [ReadRecord])
            do {
                read = try readRecords(bytes)
            } catch {
                refused += 1
                continue
            }
            let (scan, records) = read
            // What it reads is the original's records, in order, up to some point: nothing
            // changed, nothing invented, nothing skipped.
            let expected = Array(originalRecords.prefix(records.count))
            if records.count > originalRecords.count || records != expected {
                let at = zip(records, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? expected.count
                Issue.record("mutation \(round) (seed \(seed)) read \(records.count) records, not a prefix of the original's \(originalRecords.count): record \(at) reads \(at < records.count ? records[at].description : "-"), the original \(at < originalRecords.count ? originalRecords[at].description : "-")")
                continue
            }
            #expect(scan.header == clean.header, "mutation \(round) (seed \(seed)) read a changed header")
            #expect(scan.recordCount == UInt64(records.filter { $0.header.type != .seal }.count), "mutation \(round) (seed \(seed))")
            // A mutated log may only read as clean if it is a shorter, unsealed valid prefix.
            if scan.tail == .clean && bytes != original && scan.isSealed {
                Issue.record("mutation \(round) (seed \(seed)) read as a clean sealed log")
            }
            prefixes += 1
            if records.count < originalRecords.count { shorter += 1 }
        }
        print("mutated logs (seed \(seed)): \(refused) refused, \(prefixes) read as a prefix (\(shorter) shorter than the original)")
        #expect(refused > 0 && prefixes > 0 && shorter > 0)
    }
}
