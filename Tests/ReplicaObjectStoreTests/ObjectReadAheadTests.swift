import Foundation
import Synchronization
import Testing
@testable import ReplicaObjectStore
@testable import ReplicaStore
@testable import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Read-ahead of a point read from the bucket: a sequential reader finds the next chunks
/// fetched or fetching (in parallel), never fetches a chunk twice (a read of a chunk that
/// read-ahead is fetching waits for that GET), and a random reader fetches only what it reads.
@Suite(.timeLimit(.minutes(2)))
struct ObjectReadAheadTests {
    /// The test bucket with each GET counted by key and slowed by `delay`, as a remote bucket's
    /// round trip would be: the read-ahead is still in flight when the reader reaches it.
    final class CountingBucket: ObjectBucket {
        let inner: DirectoryBucket
        let delayMicroseconds: UInt32
        let gets = Mutex<[String: Int]>([:])

        init(_ inner: DirectoryBucket, delayMicroseconds: UInt32) {
            self.inner = inner
            self.delayMicroseconds = delayMicroseconds
        }

        var location: String { inner.location }
        func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String { try inner.put(key, bytes, condition: condition) }
        func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
            try inner.upload(key, from: source, partSize: partSize, progress: progress)
        }
        func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? {
            gets.withLock { $0[key, default: 0] += 1 }
            usleep(delayMicroseconds)
            return try inner.get(key, range: range)
        }
        func head(_ key: String) throws -> ObjectInfo? { try inner.head(key) }
        func list(prefix: String) throws -> [ObjectInfo] { try inner.list(prefix: prefix) }
        func delete(_ key: String) throws { try inner.delete(key) }

        /// GETs of base chunk objects, by key.
        var chunkGets: [String: Int] { gets.withLock { $0.filter { $0.key.hasPrefix(ObjectLayout.chunks("vm")) } } }
    }

    let dir: String
    let chunkSize = 64 << 10
    let chunks = 24

    init() throws {
        var template = Array("/tmp/s3-readahead-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    }

    /// A VM whose one disk has `chunks` chunks, each different (chunks are stored by content),
    /// seeded into a directory bucket; returns the disk's bytes.
    func seeded(_ bucket: DirectoryBucket) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: chunks * chunkSize)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: (i / chunkSize) &* 31 &+ i &* 7 &+ 1) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/a.img"))
        let store = try ObjectStore(bucket: bucket, chunkSize: chunkSize, cacheDirectory: dir + "/seed-cache", cacheLimit: 16 << 20)
        try store.seed(vm: "vm", sources: ["a.img": SourceFile(dir + "/a.img")], chains: [:], progress: nil)
        return bytes
    }

    @Test func aSequentialReadFetchesEveryChunkOnceWhileReadAheadRuns() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try DirectoryBucket(root: dir + "/bucket")
        let expected = try seeded(plain)
        let bucket = CountingBucket(plain, delayMicroseconds: 30_000)
        let store = try ObjectStore(bucket: bucket, chunkSize: chunkSize, readAhead: 4, cacheDirectory: dir + "/cold", cacheLimit: 16 << 20)
        let reader = try store.openPoint(vm: "vm", disk: "a.img", point: nil)
        var got = [UInt8](repeating: 0xEE, count: expected.count)
        let piece = 16 << 10
        let started = Clock.nowNanos()
        for at in stride(from: 0, to: got.count, by: piece) {
            try got.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress! + at, count: piece, offset: Int64(at)) }
        }
        let seconds = Double(Clock.nowNanos() - started) / 1e9
        #expect(got == expected)
        let gets = bucket.chunkGets
        #expect(gets.count == chunks, "every chunk fetched: \(gets.count) of \(chunks)")
        #expect(gets.values.allSatisfy { $0 == 1 }, "a chunk fetched twice: \(gets.values.sorted())")
        // One GET after another would take chunks x 30 ms; with four in flight, about a quarter.
        let serial = Double(chunks) * 0.030
        print("sequential read of \(chunks) chunks: \(String(format: "%.2f", seconds)) s (one GET at a time: \(serial) s)")
        #expect(seconds < serial * 0.75, "read-ahead did not overlap the GETs: \(seconds) s against \(serial) s one at a time")
    }

    @Test func aRandomReadFetchesOnlyTheChunksItReads() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try DirectoryBucket(root: dir + "/bucket")
        let expected = try seeded(plain)
        let bucket = CountingBucket(plain, delayMicroseconds: 1_000)
        let store = try ObjectStore(bucket: bucket, chunkSize: chunkSize, readAhead: 4, cacheDirectory: dir + "/cold", cacheLimit: 16 << 20)
        let reader = try store.openPoint(vm: "vm", disk: "a.img", point: nil)
        // Far apart, out of order: no read follows the one before it.
        let picks = [17, 3, 11, 22, 6]
        for c in picks {
            var got = [UInt8](repeating: 0, count: 4096)
            let at = c * chunkSize + 1000
            try got.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress!, count: 4096, offset: Int64(at)) }
            #expect(got == Array(expected[at..<(at + 4096)]))
        }
        usleep(200_000) // a read-ahead started by mistake would show by now
        let gets = bucket.chunkGets
        #expect(gets.count == picks.count, "random reads fetched \(gets.count) chunks for \(picks.count) read")
    }
}
