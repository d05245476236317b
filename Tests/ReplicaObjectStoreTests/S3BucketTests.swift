import Crypto
import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization
import Testing
@testable import ReplicaObjectStore

/// S3Bucket against the real Ceph RGW that Tools/ceph.sh runs (Tools/test.sh starts it).
@Suite(.serialized, .timeLimit(.minutes(5)), .enabled(if: CephTestEnvironment.enabled))
struct S3BucketTests {
    static func sha256(_ bytes: [UInt8]) -> String { SigV4Signer.hex(SHA256.hash(data: bytes)) }
    static func md5(_ bytes: [UInt8]) -> String { SigV4Signer.hex(Insecure.MD5.hash(data: bytes)) }

    @Test func putGetRangeHeadDelete() throws {
        let (bucket, _) = try CephTestEnvironment.freshBucket("basic", prefix: "vm 1/disks")
        let key = "logs/a b+c%d=e&f/é/ሴ//x~!'()*.hrl"
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let etag = try bucket.put(key, bytes, condition: .none)
        #expect(etag == Self.md5(bytes))
        #expect(try bucket.get(key, range: nil) == bytes)
        #expect(try bucket.get(key, range: 1000..<1010) == Array(bytes[1000..<1010]))
        #expect(try bucket.get(key, range: 99_990..<100_500) == Array(bytes[99_990...]), "a range past the end is cut")
        #expect(try bucket.get(key, range: 100_000..<100_010) == [], "a range at the end is empty")
        #expect(try bucket.head(key) == ObjectInfo(key: key, size: 100_000, etag: etag))
        #expect(try bucket.get("missing", range: nil) == nil)
        #expect(try bucket.head("missing") == nil)
        // The prefix is part of every key in the bucket, and listings give keys without it.
        let whole = S3Bucket(url: S3URL(bucket: bucket.url.bucket), configuration: bucket.configuration)
        #expect(try whole.head("vm 1/disks/" + key)?.size == 100_000)
        #expect(try bucket.list(prefix: "logs/").map(\.key) == [key])
        try bucket.delete(key)
        #expect(try bucket.head(key) == nil)
        try bucket.delete(key)   // deleting a missing key is not an error
    }

    @Test func listPastOneThousandKeys() throws {
        let (bucket, _) = try CephTestEnvironment.freshBucket("list")
        let keys = (0..<1_030).map { String(format: "p/%05d", $0) }
        // Four writers at once keep the test short; each put is one small request.
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for (i, key) in keys.enumerated() where i % 4 == worker {
                do { try bucket.put(key, Array(key.utf8), condition: .none) } catch {
                    failures.withLock { $0.append("\(key): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        try bucket.put("q/other", [1], condition: .none)
        let requestsBefore = bucket.counters.requests
        let listed = try bucket.list(prefix: "p/")
        #expect(listed.map(\.key) == keys)
        #expect(listed.allSatisfy { $0.size == 7 && $0.etag == Self.md5(Array($0.key.utf8)) })
        #expect(bucket.counters.requests - requestsBefore >= 2, "more than 1000 keys take a continued listing")
        #expect(try bucket.list(prefix: "").count == keys.count + 1)
    }

    @Test func conditionalPuts() throws {
        let (bucket, _) = try CephTestEnvironment.freshBucket("cond")
        let first = try bucket.put("catalog", Array("v1".utf8), condition: .ifAbsent)
        let again = #expect(throws: ReplicaError.self) { try bucket.put("catalog", Array("v1b".utf8), condition: .ifAbsent) }
        #expect(again?.code == .preconditionFailed)
        #expect(try bucket.get("catalog", range: nil) == Array("v1".utf8))
        let second = try bucket.put("catalog", Array("v2".utf8), condition: .ifMatch(first))
        #expect(second != first)
        let stale = #expect(throws: ReplicaError.self) { try bucket.put("catalog", Array("v3".utf8), condition: .ifMatch(first)) }
        #expect(stale?.code == .preconditionFailed)
        #expect(stale?.description.contains("changed by another writer") == true)
        #expect(try bucket.get("catalog", range: nil) == Array("v2".utf8))
        let missing = #expect(throws: ReplicaError.self) { try bucket.put("nothing", [1], condition: .ifMatch(first)) }
        #expect(missing?.code == .preconditionFailed)
    }

    @Test func multipartUploadInParallel() throws {
        let (bucket, _) = try CephTestEnvironment.freshBucket("multi", parallelism: 4)
        let path = try CephTestEnvironment.randomFile("multi", count: 40 << 20)
        defer { unlink(path) }
        let source = SourceFile(path)
        let local = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var reports: [Int64] = []
        let etag = try bucket.upload("big.hrl", from: source, partSize: 8 << 20) { reports.append($0) }
        #expect(etag.hasSuffix("-5"), "five parts of 8 MiB")
        let c = bucket.counters
        #expect(c.partsSent == 5 && c.partsReused == 0 && c.bytesSent == 40 << 20)
        #expect(reports.last == 40 << 20 && reports == reports.sorted())
        #expect(try bucket.head("big.hrl")?.size == 40 << 20)
        let back = try #require(try bucket.get("big.hrl", range: nil))
        #expect(Self.sha256(back) == Self.sha256(local))
        // Below the part size: one PUT.
        let small = try CephTestEnvironment.randomFile("small", count: 1 << 20)
        defer { unlink(small) }
        #expect(try bucket.upload("small", from: SourceFile(small), partSize: 8 << 20, progress: nil)
                == Self.md5(try [UInt8](Data(contentsOf: URL(fileURLWithPath: small)))))
    }

    /// radosgw killed with kill -9 while parts are in flight: the upload fails recoverable;
    /// with radosgw started again the same call resumes the stored upload, sends only the parts
    /// it lacks, and the object equals the file.
    @Test(.timeLimit(.minutes(5)))
    func multipartResumesAfterRadosgwKill() throws {
        let (bucket, env) = try CephTestEnvironment.freshBucket("resume", parallelism: 2)
        let path = try CephTestEnvironment.randomFile("resume", count: 40 << 20)
        defer { unlink(path) }
        var restarted = false
        defer { if !restarted { try? CephTestEnvironment.cephScript(["restart-rgw"], env: env) } }
        let pid = try #require(CephTestEnvironment.rgwPID(env))
        var killed = false
        let failure = #expect(throws: ReplicaError.self) {
            try bucket.upload("resumed.hrl", from: SourceFile(path), partSize: 8 << 20) { done in
                if done >= 8 << 20 && !killed {
                    killed = true
                    kill(pid, SIGKILL)
                }
            }
        }
        #expect(killed)
        #expect(failure?.kind == .recoverable, "\(String(describing: failure))")
        let first = bucket.counters
        #expect(first.partsSent >= 1 && first.partsSent < 5)
        try CephTestEnvironment.cephScript(["restart-rgw"], env: env)
        restarted = true

        let etag = try bucket.upload("resumed.hrl", from: SourceFile(path), partSize: 8 << 20, progress: nil)
        let second = bucket.counters
        let sent = second.partsSent - first.partsSent
        #expect(second.uploadsResumed == 1)
        #expect(second.partsReused >= 1, "parts stored before the kill are kept")
        #expect(sent + second.partsReused == 5)
        #expect(second.bytesSent - first.bytesSent == Int64(sent) * (8 << 20), "only the missing parts are sent")
        #expect(etag.hasSuffix("-5"))
        let local = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(Self.sha256(try #require(try bucket.get("resumed.hrl", range: nil))) == Self.sha256(local))
        print("resume: \(first.partsSent) parts before the kill, \(second.partsReused) kept, \(sent) sent after")
    }

    @Test func wrongCredentialsAreRefusedClearly() throws {
        let (good, env) = try CephTestEnvironment.freshBucket("creds")
        var bad = good.configuration
        bad.credentials.secretAccessKey += "x"
        let wrongSecret = S3Bucket(url: good.url, configuration: bad, retryDelays: [])
        let e1 = #expect(throws: ReplicaError.self) { try wrongSecret.put("k", [1], condition: .none) }
        #expect(e1?.kind == .nonRecoverable)
        #expect(e1?.description == "credentials refused by \(env["AWS_ENDPOINT_URL"]!): SignatureDoesNotMatch")
        bad.credentials.accessKeyID = "NOSUCHKEY0000000000"
        let unknownKey = S3Bucket(url: good.url, configuration: bad, retryDelays: [])
        let e2 = #expect(throws: ReplicaError.self) { _ = try unknownKey.list(prefix: "") }
        #expect(e2?.kind == .nonRecoverable)
        #expect(e2?.description == "credentials refused by \(env["AWS_ENDPOINT_URL"]!): InvalidAccessKeyId")
        let e3 = #expect(throws: ReplicaError.self) { _ = try unknownKey.head("k") }
        #expect(e3?.description.hasPrefix("credentials refused by") == true)
        #expect(try good.head("k") == nil, "nothing was written")
        #expect(good.counters.retries == 0 && wrongSecret.counters.retries == 0)
    }

    @Test func missingBucketIsAClearError() throws {
        let env = try CephTestEnvironment.load()
        let config = try S3Configuration.resolve(options: TargetOptions(), environment: env)
        let bucket = S3Bucket(url: try S3URL(parsing: "s3://no-such-bucket-here/p"), configuration: config, retryDelays: [])
        let message = "bucket no-such-bucket-here does not exist at \(env["AWS_ENDPOINT_URL"]!)"
        for (name, call) in [("put", { _ = try bucket.put("k", [1], condition: .none) }),
                             ("get", { _ = try bucket.get("k", range: nil) }),
                             ("head", { _ = try bucket.head("k") }),
                             ("list", { _ = try bucket.list(prefix: "") })] as [(String, () throws -> Void)] {
            let error = #expect(throws: ReplicaError.self, "\(name)") { try call() }
            #expect(error?.description == message, "\(name)")
            #expect(error?.kind == .nonRecoverable, "\(name)")
        }
    }
}
