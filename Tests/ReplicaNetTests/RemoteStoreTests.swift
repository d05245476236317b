import Foundation
import Synchronization
import Testing
@testable import ReplicaLog
@testable import ReplicaNet
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaSystem

/// The remote store against a real receiver (Hummingbird over loopback TCP, plain HTTP here;
/// mutual TLS in ReceiverTLSTests): logs made by the real write path are shipped, committed
/// and exported byte for byte; transfers resume from the receiver's durable offset; bad
/// requests are refused with nothing written.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RemoteStoreTests {
    let dir: String
    var disks: String { dir + "/disks" }

    init() throws {
        var template = Array("/tmp/net-remote-test-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try FileSystem.mkdirs(dir + "/disks")
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// A journal's sealed logs not shipped yet, in order.
    static func sealedLogs(_ disks: String, _ disk: String, after shipped: inout Set<String>) throws -> [String] {
        let all = try FileSystem.list(disks).filter { LogName.parse($0)?.image == disk }.map { disks + "/" + $0 }.sorted()
        let sealed = try all.filter { try LogScanner.scan($0).isSealed && !shipped.contains($0) }
        shipped.formUnion(sealed)
        return sealed
    }

    static func write(_ j: ImageJournal, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try j.write($0, offset: offset) }
    }

    /// A sparse 8 MiB image with 2 MiB of data (at 0 and at 5 MiB), its journal opened.
    static func makeDisk(_ disks: String) throws -> DiskSet {
        let fd = try FileDescriptor.open(disks + "/a.img", O_RDWR | O_CREAT, mode: 0o600)
        try fd.truncate(to: 8 << 20)
        var random = [UInt8](repeating: 0, count: 1 << 20)
        for i in random.indices { random[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        try random.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) }
        try random.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 5 << 20) }
        fd.close()
        return try DiskSet.open(directory: disks)
    }

    @Test("points shipped to a receiver export byte for byte; verify, prune, resync, failover and metadata work through it")
    func pointsShippedToAReceiverExportExactly() async throws {
        defer { cleanup() }
        let receiver = try LoopbackReceiver(storeDirectory: dir + "/store")
        try receiver.start()
        defer { receiver.stop() }
        let (dir, disks, port) = (self.dir, self.disks, receiver.port)
        try await blocking {
            let remote = RemoteStore(client: ReceiverClient(host: "127.0.0.1", port: port, tls: nil))
            #expect(remote.location == "replicafs://127.0.0.1:\(port)")
            let set = try Self.makeDisk(disks)
            defer { try? set.close() }
            let a = try #require(set.journal(named: "a.img"))
            _ = try set.rotate()
            var shipped = Set<String>()
            _ = try Self.sealedLogs(disks, "a.img", after: &shipped)
            let active = a.activeLog
            let image = SourceFile(disks + "/a.img")
            let copied = try remote.seed(vm: "vm1", sources: ["a.img": image], chains: ["a.img": (active.chain, active.firstLSN)], progress: nil)
            #expect(copied == 2 << 20, "only the data ranges cross")
            #expect(remote.hasVM("vm1") && remote.initialCopy("vm1") == nil)
            try remote.saveMetadata(VMMetadata(vm: "vm1", disks: ["a.img"], networks: ["lan"]))
            #expect(try remote.metadata(vm: "vm1") == VMMetadata(vm: "vm1", disks: ["a.img"], networks: ["lan"]))

            var expected: [Int: [UInt8]] = [:]
            for k in 1...3 {
                try Self.write(a, [UInt8](repeating: UInt8(k), count: 300_000), at: Int64(k) * 1_000_000)
                try Self.write(a, (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * k) }, at: 6_000_000)
                let rotation = try set.rotate()
                let logs = SourceFile.map(["a.img": try Self.sealedLogs(disks, "a.img", after: &shipped)])
                let raw = try logs["a.img"]!.reduce(Int64(0)) { $0 + (try $1.size()) }
                let (received, sent) = try remote.receive(vm: "vm1", logs: logs, compress: k == 2)
                if k == 2 { #expect(sent < raw / 2, "compressed on the wire: \(sent) of \(raw)") } else { #expect(sent == raw) }
                let point = try remote.commit(vm: "vm1", logs: received, consistency: k == 2 ? .app : .crash, cut: rotation.cutID,
                                              timeNanos: UInt64(k) * 3_600_000_000_000)
                #expect(point.id == k)
                remote.discardReceived(vm: "vm1")
                expected[k] = try FileSystem.readFile(disks + "/a.img")
            }
            for k in 1...3 {
                let out = dir + "/export-\(k)"
                #expect(try remote.export(vm: "vm1", point: .id(k), disk: "a.img", to: out).id == k)
                #expect(try FileSystem.readFile(out) == expected[k]!, "point \(k)")
            }
            #expect(try remote.export(vm: "vm1", point: .latestApp, disk: "a.img", to: dir + "/app").id == 2)
            #expect(try remote.verify(vm: "vm1", sources: ["a.img": image], point: nil, blockSize: 64 << 10) == ["a.img": []])
            #expect(try remote.verify(vm: "vm1", sources: ["a.img": image], point: .id(1), blockSize: 64 << 10)["a.img"]?.isEmpty == false)
            let reader = try remote.openPoint(vm: "vm1", disk: "a.img", point: .id(2))
            var bytes = [UInt8](repeating: 9, count: 100)
            try bytes.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress!, count: 100, offset: 2_000_000) }
            #expect(bytes == [UInt8](expected[2]![2_000_000..<2_000_100]))
            // Prune merges points 1 and 2 into the base; the open reader stays at its point.
            #expect(try remote.prune(vm: "vm1", retentionSeconds: 60, nowNanos: 4 * 3_600_000_000_000) == [1, 2])
            try bytes.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress!, count: 100, offset: 6_000_000) }
            #expect(bytes == [UInt8](expected[2]![6_000_000..<6_000_100]))
            #expect(try remote.points("vm1").map(\.id) == [3])

            // A resync after writes behind the journal's back: only the differing blocks cross.
            let fd = try FileDescriptor.open(disks + "/a.img", O_RDWR)
            try [UInt8](repeating: 0xEE, count: 4096).withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: 4096, offset: 3 << 20) }
            fd.close()
            _ = try set.rotate()
            _ = try Self.sealedLogs(disks, "a.img", after: &shipped)
            let cut = a.activeLog
            let report = try remote.resync(vm: "vm1", sources: ["a.img": image], chains: ["a.img": (cut.chain, cut.firstLSN)],
                                           reason: "test", blockSize: 64 << 10, progress: nil)
            #expect(report.bytesSent == 64 << 10, "one block differs: \(report.bytesSent)")
            #expect(try remote.resyncMark("vm1")?.finished == true)
            try Self.write(a, [UInt8](repeating: 0x55, count: 5000), at: 7_000_000)
            let rotation = try set.rotate()
            let logs = SourceFile.map(["a.img": try Self.sealedLogs(disks, "a.img", after: &shipped)])
            _ = try remote.receive(vm: "vm1", logs: logs, compress: false)
            let point = try remote.commit(vm: "vm1", logs: logs, consistency: .crash, cut: rotation.cutID, timeNanos: 5 * 3_600_000_000_000)
            try remote.export(vm: "vm1", point: .id(point.id), disk: "a.img", to: dir + "/after-resync")
            #expect(try FileSystem.readFile(dir + "/after-resync") == FileSystem.readFile(disks + "/a.img"))

            // Failover bookkeeping; the working directory is on the failing-over host.
            #expect(remote.localFailoverDirectory(vm: "vm1") == nil)
            let state = try remote.beginFailover(vm: "vm1", point: .latest, kind: .test, mountpoint: "/mnt/x", sourceDisksDir: nil,
                                                 workDirectory: dir + "/work")
            #expect(state.point.id == point.id && remote.failoverState("vm1")?.kind == .test && remote.failedOverVMs() == ["vm1"])
            #expect(throws: ReplicaError.self) { try remote.delete(vm: "vm1") }
            try remote.discardFailover(vm: "vm1")
            #expect(remote.failoverState("vm1") == nil)

            // Errors keep their code across the wire.
            let unknown = #expect(throws: ReplicaError.self) { try remote.catalog("nope") }
            #expect(unknown?.code == .unknownVM)
            let missing = #expect(throws: ReplicaError.self) { try remote.export(vm: "vm1", point: .id(99), disk: "a.img", to: dir + "/x") }
            #expect(missing?.code == .noSuchPoint)
            try remote.delete(vm: "vm1")
            #expect(!remote.hasVM("vm1"))
        }
    }

    @Test("a log transfer cut by the receiver stopping resumes from the acknowledged offset; the point is exact")
    func interruptedUploadResumes() async throws {
        defer { cleanup() }
        let receiver = try LoopbackReceiver(storeDirectory: dir + "/store")
        try receiver.start()
        defer { receiver.stop() }
        let (disks, port) = (self.disks, receiver.port)
        try await blocking {
            let set = try Self.makeDisk(disks)
            defer { try? set.close() }
            let a = try #require(set.journal(named: "a.img"))
            _ = try set.rotate()
            var shipped = Set<String>()
            _ = try Self.sealedLogs(disks, "a.img", after: &shipped)
            let active = a.activeLog
            let plain = RemoteStore(client: ReceiverClient(host: "127.0.0.1", port: port, tls: nil))
            try plain.seed(vm: "vm1", sources: ["a.img": SourceFile(disks + "/a.img")], chains: ["a.img": (active.chain, active.firstLSN)], progress: nil)
            // 20 MiB of incompressible writes: a log of three chunks.
            var rng = SystemRandomNumberGenerator()
            for m in 0..<20 {
                try Self.write(a, (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: Int64(m % 8) << 20)
            }
            let rotation = try set.rotate()
            let logs = SourceFile.map(["a.img": try Self.sealedLogs(disks, "a.img", after: &shipped)])
            let size = try logs["a.img"]!.reduce(Int64(0)) { $0 + (try $1.size()) }
            #expect(size > 2 * Int64(ReceiverAPI.chunkBytes))
            // Before the second chunk goes out, the receiver stops (its connections close);
            // it comes back a second later on the same port.
            let calls = Shared(0)
            let remote = RemoteStore(client: ReceiverClient(host: "127.0.0.1", port: port, tls: nil), throttle: { _ in
                guard calls.value.withLock({ $0 += 1; return $0 }) == 2 else { return }
                receiver.stop()
                Thread.detachNewThread { sleep(1); try? receiver.start() }
            })
            let (received, sent) = try remote.receive(vm: "vm1", logs: logs, compress: false)
            // The interrupted chunk is sent twice, nothing else.
            #expect(sent >= size && sent <= size + Int64(ReceiverAPI.chunkBytes), "sent \(sent) of \(size)")
            let point = try remote.commit(vm: "vm1", logs: received, consistency: .crash, cut: rotation.cutID, timeNanos: 1)
            try remote.export(vm: "vm1", point: .id(point.id), disk: "a.img", to: disks + "/../out")
            #expect(try FileSystem.readFile(disks + "/../out") == FileSystem.readFile(disks + "/a.img"))
        }
    }

    @Test("garbage, oversized and out-of-order requests are refused with a clear 4xx; nothing is written")
    func badRequestsAreRefused() async throws {
        defer { cleanup() }
        let receiver = try LoopbackReceiver(storeDirectory: dir + "/store")
        try receiver.start()
        defer { receiver.stop() }
        let (disks, port, store) = (self.disks, receiver.port, receiver.store)
        try await blocking {
            let set = try Self.makeDisk(disks)
            try set.close()
            let client = ReceiverClient(host: "127.0.0.1", port: port, tls: nil)
            let remote = RemoteStore(client: client, resumeSeconds: 0)
            try remote.seed(vm: "vm1", sources: ["a.img": SourceFile(disks + "/a.img")], chains: [:], progress: nil)
            let before = try FileSystem.readFile(store.root + "/vm1/catalog.json")
            func refused(_ status: Int, _ body: () throws -> Void) {
                do {
                    try body()
                    Issue.record("not refused")
                } catch let e as ReplicaError {
                    // Refused for the request itself: a bad request, never "try again later".
                    #expect(e.code == .badRequest || (status == 404 && e.kind == .nonRecoverable), "\(e)")
                    #expect(!e.description.contains("\n"))
                } catch {
                    Issue.record("unexpected \(error)")
                }
            }
            // Oversized: an upload chunk past the limit.
            refused(413) { try client.call(.PUT, "/vms/vm1/uploads/a.img.000001.hrl", query: ["offset": "0"],
                                           body: [UInt8](repeating: 1, count: ReceiverAPI.maxChunkBytes + 1)) }
            // Refused before a byte was written (the body is written as it arrives otherwise).
            #expect(!FileSystem.exists(store.root + "/vm1/incoming/a.img.000001.hrl"))
            // Oversized JSON.
            refused(413) { try client.call(.POST, "/vms/vm1/commit", body: [UInt8](repeating: 0x20, count: ReceiverAPI.maxJSONBytes + 1),
                                           contentType: "application/json") }
            // Garbage JSON, a garbage compressed body, a bad name, a gap in an upload.
            refused(400) { try client.call(.POST, "/vms/vm1/commit", body: Array("{\"logs\": 12".utf8), contentType: "application/json") }
            refused(400) { try client.call(.PUT, "/vms/vm1/uploads/x.hrl", query: ["offset": "0"],
                                           headers: [(ReceiverAPI.encodingHeader, "zlib"), (ReceiverAPI.rawLengthHeader, "100")],
                                           body: Array("not deflate".utf8)) }
            refused(404) { try client.call(.GET, "/vms/..%2Fetc/catalog") }
            refused(404) { try client.call(.PUT, "/vms/vm1/uploads/..", query: ["offset": "0"], body: [1]) }
            refused(400) { try client.call(.PUT, "/vms/vm1/uploads/x.hrl", query: ["offset": "5"], body: [1]) }
            refused(400) { try client.call(.PUT, "/vms/vm1/uploads/x.hrl", query: ["offset": "-1"], body: [1]) }
            refused(404) { try client.call(.GET, "/nothing/here") }
            // A garbage "log" uploaded whole is refused by the commit's verification.
            try client.call(.PUT, "/vms/vm1/uploads/a.img.000009.hrl", query: ["offset": "0"], body: [UInt8](repeating: 7, count: 5000))
            #expect(throws: ReplicaError.self) {
                try remote.commit(vm: "vm1", logs: ["a.img": [SourceFile("/nowhere/a.img.000009.hrl")]], consistency: .crash, cut: 1, timeNanos: 1)
            }
            remote.discardReceived(vm: "vm1")
            #expect(try FileSystem.readFile(store.root + "/vm1/catalog.json") == before)
            #expect(try FileSystem.list(store.root + "/vm1/points").isEmpty)
            #expect(((try? FileSystem.list(store.root + "/vm1/incoming")) ?? []).isEmpty)
        }
    }
}
