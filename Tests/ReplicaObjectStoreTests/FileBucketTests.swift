import Crypto
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import ReplicaObjectStore
@testable import ReplicaStore
@testable import ReplicaSystem

/// The local-directory bucket the encrypted receiver store is built on: S3's semantics where
/// the object store relies on them (atomic and conditional puts, ranges, sorted listings,
/// ETags), on a real directory.
@Suite(.timeLimit(.minutes(1)))
struct FileBucketTests {
    let dir: String

    init() throws {
        var template = Array("/tmp/file-bucket-test-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// Every path under `root` (and `root`), for checks of what a step left behind.
    static func find(_ root: String) -> [String] {
        var out: [String] = [root]
        for name in (try? FileSystem.list(root)) ?? [] {
            let p = root + "/" + name
            if FileSystem.isDirectory(p) { out += find(p) } else { out.append(p) }
        }
        return out
    }

    @Test("put, ranged get, head, sorted listing by prefix, delete; no temporary file is left or listed")
    func objectsRoundTrip() throws {
        defer { cleanup() }
        let bucket = try FileBucket(root: dir + "/b")
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let etag = try bucket.put("vms/a/logs/2", bytes, condition: .none)
        #expect(ObjectDigest.plainETag(etag) == ObjectDigest.hex(Insecure.MD5.hash(data: bytes)))
        try bucket.put("vms/a/logs/10", [1], condition: .none)
        try bucket.put("vms/a/catalog/000000000001", [2, 3], condition: .none)
        try bucket.put("vms/ab/x", [4], condition: .none)
        try bucket.put("top", [], condition: .none)
        #expect(try bucket.get("vms/a/logs/2", range: nil) == bytes)
        #expect(try bucket.get("vms/a/logs/2", range: 100..<200) == Array(bytes[100..<200]))
        #expect(try bucket.get("vms/a/logs/2", range: 9_990..<20_000) == Array(bytes[9_990...]), "a range past the end is cut")
        #expect(try bucket.get("vms/a/nothing", range: nil) == nil)
        #expect(try bucket.get("top/below", range: nil) == nil, "a key under an object is missing, not an error")
        #expect(try bucket.head("vms/a/logs/2") == ObjectInfo(key: "vms/a/logs/2", size: 10_000, etag: ObjectDigest.plainETag(etag)))
        #expect(try bucket.list(prefix: "vms/a/").map(\.key) == ["vms/a/catalog/000000000001", "vms/a/logs/10", "vms/a/logs/2"])
        #expect(try bucket.list(prefix: "vms/a").map(\.key) == ["vms/a/catalog/000000000001", "vms/a/logs/10", "vms/a/logs/2", "vms/ab/x"])
        #expect(try bucket.list(prefix: "vms/a/logs/1").map(\.key) == ["vms/a/logs/10"])
        #expect(try bucket.list(prefix: "none/").isEmpty)
        #expect(try bucket.list(prefix: "").map(\.key) == ["top", "vms/a/catalog/000000000001", "vms/a/logs/10", "vms/a/logs/2", "vms/ab/x"])
        try bucket.delete("vms/a/logs/10")
        try bucket.delete("vms/a/logs/10")
        try bucket.delete("vms/ab/x")
        #expect(try bucket.list(prefix: "vms/").map(\.key) == ["vms/a/catalog/000000000001", "vms/a/logs/2"])
        #expect(!FileSystem.exists(dir + "/b/vms/ab"), "an emptied directory goes")
        let leftovers = Self.find(dir + "/b").filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test("keys that would leave the directory or name a hidden file are refused, nothing written")
    func badKeysRefused() throws {
        defer { cleanup() }
        let bucket = try FileBucket(root: dir + "/b")
        for key in ["../x", "a/../../x", "/abs", "a//b", "a/.tmp-1", "", "a/"] {
            #expect(throws: ReplicaError.self, "\(key)") { try bucket.put(key, [1], condition: .none) }
        }
        #expect(Self.find(dir).filter { !$0.hasSuffix("/b") && $0 != dir }.isEmpty)
    }

    @Test("conditional puts: if-absent and if-match are honoured, and of many racing if-absent writers exactly one wins")
    func conditionalPuts() throws {
        defer { cleanup() }
        let bucket = try FileBucket(root: dir + "/b")
        let first = try bucket.put("c/1", [1], condition: .ifAbsent)
        #expect(throws: ReplicaError.self) { try bucket.put("c/1", [2], condition: .ifAbsent) }
        #expect(throws: ReplicaError.self) { try bucket.put("c/1", [3], condition: .ifMatch("\"0123\"")) }
        #expect(try bucket.get("c/1", range: nil) == [1])
        let second = try bucket.put("c/1", [4], condition: .ifMatch(first))
        #expect(second != first)
        #expect(try bucket.get("c/1", range: nil) == [4])
        let wins = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do {
                try bucket.put("race/000000000002", [UInt8(i)], condition: .ifAbsent)
                wins.withLock { $0.append(i) }
            } catch let e as ReplicaError where e.code == .preconditionFailed {
            } catch {
                Issue.record("\(error)")
            }
        }
        let winners = wins.withLock { $0 }
        #expect(winners.count == 1)
        #expect(try bucket.get("race/000000000002", range: nil) == winners.map { UInt8($0) })
    }

    @Test("an upload copies the file in parts and answers S3's multipart ETag of those parts")
    func uploadETags() throws {
        defer { cleanup() }
        let bucket = try FileBucket(root: dir + "/b")
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/src"))
        var progressed: Int64 = 0
        let etag = try bucket.upload("logs/big", from: SourceFile(dir + "/src"), partSize: 100_000) { progressed += $0 }
        #expect(progressed == 300_000)
        #expect(try bucket.get("logs/big", range: nil) == bytes)
        let expected = bytes.withUnsafeBytes { ObjectDigest.expectedETags($0, partSize: 100_000) }
        #expect(ObjectDigest.plainETag(etag).hasSuffix("-3") && expected.contains(ObjectDigest.plainETag(etag)))
        let small = try bucket.upload("logs/small", from: SourceFile(dir + "/src"), partSize: 1 << 20, progress: nil)
        #expect(ObjectDigest.plainETag(small) == ObjectDigest.hex(Insecure.MD5.hash(data: bytes)))
    }
}
