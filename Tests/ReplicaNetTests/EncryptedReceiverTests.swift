import Foundation
import Testing
@testable import ReplicaLog
@testable import ReplicaNet
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaSystem

/// A real `replicafs serve --encrypt-key-file` over loopback mutual TLS takes an initial copy,
/// logs and a resync from the remote store; a marker written into the disk never appears in
/// any file under the store directory (staging included, checked while transfers are half
/// done); export and a test failover at the receiver's side with the key give the source's
/// bytes; without the key or with another one every command fails in one line, nothing written.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct EncryptedReceiverTests {
    let dir: String
    var disks: String { dir + "/disks" }
    var store: String { dir + "/store" }
    var key: String { dir + "/store.key" }

    static let marker = "RFS-PLAINTEXT-MARKER-5f3a9c"

    init() throws {
        var template = Array("/tmp/atrest-net-XXXXXX".utf8CString)
        dir = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
        try FileSystem.mkdirs(dir + "/disks")
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    /// Bytes holding the marker every 4 KiB among pseudo-random bytes (`seed` varies them).
    static func markedBytes(_ count: Int, seed: Int) -> [UInt8] {
        var bytes = (0..<count).map { UInt8(truncatingIfNeeded: ($0 &+ seed) &* 2654435761 >> 11) }
        let m = Array(marker.utf8)
        for at in stride(from: 100, to: count - m.count, by: 4096) { bytes.replaceSubrange(at..<(at + m.count), with: m) }
        return bytes
    }

    /// Files under `root` holding the marker (grep over every byte).
    static func holdingMarker(_ root: String) -> [String] {
        let r = ReplicafsCommand.run("grep -rlaF -- '\(marker)' '\(root)'")
        return r.stdout.split(separator: "\n").map(String.init)
    }

    /// Paths, sizes and modification times under `root`: equal before and after = nothing written.
    static func tree(_ root: String) -> String { ReplicafsCommand.must("find '\(root)' -printf '%p %s %T@\\n' | sort") }

    static func makeKey(_ path: String) {
        ReplicafsCommand.must("head -c 32 /dev/urandom > '\(path)' && chmod 600 '\(path)'")
    }

    @Test("serve --encrypt-key-file: copy, logs and resync arrive; no plaintext under the store; export and a test failover with the key are exact; without it or with another key: refused, nothing written")
    func encryptedReceiver() async throws {
        defer { cleanup() }
        let (dir, disks, store, key) = (self.dir, self.disks, self.store, self.key)
        Self.makeKey(key)
        Self.makeKey(dir + "/other.key")
        let pki = try PKIDirectory.initialize(name: "localhost", at: dir + "/pki")
        try pki.issue(host: "sender", to: dir + "/sender")
        // The receiver, detached: "serving STORE on 127.0.0.1:PORT (daemon pid N, log L)".
        // A window of 1 MiB: the copy goes into the store in pieces as it arrives.
        let out = ReplicafsCommand.must("REPLICAFS_SEED_WINDOW=1048576 \"$RFS\" serve --store '\(store)' --encrypt-key-file '\(key)' --listen 127.0.0.1:0 --pki '\(dir)/pki'")
        let words = out.split(separator: " ")
        let port = words.firstIndex(of: "on").flatMap { Int(words[$0 + 1].split(separator: ":").last ?? "") } ?? 0
        let pid = words.firstIndex(of: "pid").flatMap { Int32(words[$0 + 1].trimmingCharacters(in: .punctuationCharacters)) } ?? 0
        defer { if pid > 0 { ReplicafsCommand.run("kill \(pid); for i in $(seq 1 100); do kill -0 \(pid) 2>/dev/null || exit 0; sleep 0.05; done; kill -9 \(pid)") } }
        try #require(port > 0 && pid > 0, "\(out)")
        #expect(ReplicafsCommand.must("cat '\(store)/replicafs-store.json'").contains("sealed-objects"))

        let tls = try PKIDirectory(path: dir + "/sender").clientTLSConfiguration()
        let expected = try await blocking {
            var expected: [Int: [UInt8]] = [:]
            let client = ReceiverClient(host: "localhost", port: port, tls: tls)
            let remote = RemoteStore(client: client)
            // An 8 MiB sparse disk: 1 MiB at 0 and 2 MiB at 5 MiB, marked.
            let fd = try FileDescriptor.open(disks + "/a.img", O_RDWR | O_CREAT, mode: 0o600)
            try fd.truncate(to: 8 << 20)
            try Self.markedBytes(1 << 20, seed: 1).withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) }
            try Self.markedBytes(2 << 20, seed: 2).withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 5 << 20) }
            fd.close()
            #expect(!Self.holdingMarker(disks).isEmpty, "the check finds the marker where it is")
            let set = try DiskSet.open(directory: disks)
            defer { try? set.close() }
            let a = try #require(set.journal(named: "a.img"))
            _ = try set.rotate()
            var shipped = Set<String>()
            _ = try RemoteStoreTests.sealedLogs(disks, "a.img", after: &shipped)
            let active = a.activeLog
            let image = SourceFile(disks + "/a.img")

            // An initial copy paused after its first chunk: staged, sealed.
            let begin = ReceiverAPI.SeedBegin(disks: ["a.img": .init(chain: active.chain, nextLSN: active.firstLSN)])
            _ = try client.json(.POST, "/vms/vm1/seed/begin", send: begin, as: InitialCopy.self)
            _ = try client.json(.PUT, "/vms/vm1/seed/a.img", query: ["offset": "0"],
                                body: Array(try FileSystem.readFile(disks + "/a.img").prefix(1 << 20)), as: ReceiverAPI.Offset.self)
            #expect(!ReplicafsCommand.must("find '\(store)/.receiver/vm1/seed' -type f").isEmpty, "the copy is staged")
            #expect(Self.holdingMarker(store) == [], "staged initial copy in plaintext")
            #expect(!FileSystem.exists(store + "/objects/vms/vm1/initial/a.img.table"), "no whole 4 MiB chunk yet")
            // The data at 5 MiB: the first 4 MiB chunk is complete and goes into the store as a
            // piece; the staged segments before it go.
            _ = try client.json(.PUT, "/vms/vm1/seed/a.img", query: ["offset": String(5 << 20)],
                                body: Array(try FileSystem.readFile(disks + "/a.img")[(5 << 20)..<(7 << 20)]), as: ReceiverAPI.Offset.self)
            #expect(FileSystem.exists(store + "/objects/vms/vm1/initial/a.img.table"), "the first piece is in the store")
            #expect(ReplicafsCommand.must("ls '\(store)/.receiver/vm1/seed/a.img'") == SealedSpool.segmentName(5 << 20))
            #expect(Self.holdingMarker(store) == [], "initial copy in plaintext")
            // The copy resumes from the receiver's durable progress: nothing is left to send.
            let copied = try remote.seed(vm: "vm1", sources: ["a.img": image], chains: ["a.img": (active.chain, active.firstLSN)], progress: nil)
            #expect(copied == 0)
            try remote.saveMetadata(VMMetadata(vm: "vm1", disks: ["a.img"], networks: []))

            // Two points of logs; each paused between upload and commit (staged, sealed). The
            // second log is 10 MiB: two upload chunks, two sealed segments.
            for k in 1...2 {
                try Self.markedBytes(k == 1 ? 300_000 : 10 << 20, seed: 10 + k).withUnsafeBytes { bytes in
                    var at = 0
                    while at < bytes.count {
                        let n = min(1 << 20, bytes.count - at)
                        try a.write(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]), offset: Int64((at + k * 4096) % (7 << 20)))
                        at += n
                    }
                }
                let rotation = try set.rotate()
                let logs = SourceFile.map(["a.img": try RemoteStoreTests.sealedLogs(disks, "a.img", after: &shipped)])
                _ = try remote.receive(vm: "vm1", logs: logs, compress: false)
                #expect(!ReplicafsCommand.must("find '\(store)/.receiver/vm1/uploads' -type f").isEmpty, "the logs are staged")
                #expect(Self.holdingMarker(store) == [], "staged log in plaintext (point \(k))")
                #expect(try remote.commit(vm: "vm1", logs: logs, consistency: .crash, cut: rotation.cutID, timeNanos: Clock.nowNanos()).id == k)
                remote.discardReceived(vm: "vm1")
                expected[k] = try FileSystem.readFile(disks + "/a.img")
            }

            // A resync (work copies in the receiver's memory), then the point it leads to.
            let w = try FileDescriptor.open(disks + "/a.img", O_RDWR)
            try Self.markedBytes(64 << 10, seed: 99).withUnsafeBytes { try w.pwrite($0.baseAddress!, count: $0.count, offset: 3 << 20) }
            w.close()
            _ = try set.rotate()
            _ = try RemoteStoreTests.sealedLogs(disks, "a.img", after: &shipped)
            let cut = a.activeLog
            let report = try remote.resync(vm: "vm1", sources: ["a.img": image], chains: ["a.img": (cut.chain, cut.firstLSN)],
                                           reason: "test", blockSize: 64 << 10, progress: nil)
            #expect(report.bytesSent == 64 << 10, "one block differs: \(report.bytesSent)")
            try a.write(UnsafeRawBufferPointer(start: Array(Self.marker.utf8), count: Self.marker.utf8.count), offset: 7_000_000)
            let rotation = try set.rotate()
            let logs = SourceFile.map(["a.img": try RemoteStoreTests.sealedLogs(disks, "a.img", after: &shipped)])
            _ = try remote.receive(vm: "vm1", logs: logs, compress: true)
            #expect(try remote.commit(vm: "vm1", logs: logs, consistency: .app, cut: rotation.cutID, timeNanos: Clock.nowNanos()).id == 3)
            remote.discardReceived(vm: "vm1")
            expected[3] = try FileSystem.readFile(disks + "/a.img")
            return expected
        }
        let found = Self.holdingMarker(store)
        #expect(found == [], "plaintext under the encrypted store: \(found)")
        #expect(ReplicafsCommand.must("find '\(store)/.receiver' -path '*/uploads/*' -type f -o -path '*/seed/*' -type f").isEmpty,
                "staging left behind")

        // At the receiver's side, with the key: every point exports exactly.
        let opened = "--target '\(store)' --encrypt-key-file '\(key)'"
        for k in 1...3 {
            let file = dir + "/export-\(k)"
            ReplicafsCommand.must("\"$RFS\" export vm1 \(opened) --point \(k) --disk a.img --to '\(file)'")
            #expect(try FileSystem.readFile(file) == expected[k]!, "point \(k)")
        }

        // Without the key, with another key, a plain store with a key: one line, nothing written.
        let before = Self.tree(store)
        let noKey = ReplicafsCommand.run("\"$RFS\" points vm1 --target '\(store)'")
        #expect(!noKey.ok && noKey.stderr.contains("is an encrypted store") && noKey.stderr.contains("--encrypt-key-file"), "\(noKey.stderr)")
        let other = ReplicafsCommand.run("\"$RFS\" export vm1 --target '\(store)' --encrypt-key-file '\(dir)/other.key' --point 1 --disk a.img --to '\(dir)/x'")
        #expect(!other.ok && other.stderr.contains("is not the key of encrypted store"), "\(other.stderr)")
        #expect(!FileSystem.exists(dir + "/x"))
        let serveNoKey = ReplicafsCommand.run("\"$RFS\" serve --store '\(store)' --listen 127.0.0.1:0 --pki '\(dir)/pki' --foreground")
        #expect(!serveNoKey.ok && serveNoKey.stderr.contains("is an encrypted store"), "\(serveNoKey.stderr)")
        let serveOther = ReplicafsCommand.run("\"$RFS\" serve --store '\(store)' --encrypt-key-file '\(dir)/other.key' --listen 127.0.0.1:0 --pki '\(dir)/pki' --foreground")
        #expect(!serveOther.ok && serveOther.stderr.contains("is not the key"), "\(serveOther.stderr)")
        for r in [noKey, other, serveNoKey, serveOther] {
            #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "\(r.stderr)")
        }
        #expect(Self.tree(store) == before, "a refused command wrote under the store")
        try FileSystem.mkdirs(dir + "/plain/vmx")
        let plain = ReplicafsCommand.run("\"$RFS\" serve --store '\(dir)/plain' --encrypt-key-file '\(key)' --listen 127.0.0.1:0 --pki '\(dir)/pki' --foreground")
        #expect(!plain.ok && plain.stderr.contains("not encrypted"), "\(plain.stderr)")
        #expect(!FileSystem.exists(dir + "/plain/" + StoreDirectoryMarker.fileName))

        // A test failover at the receiver's side, with the key: the mounted disk is point 2's.
        let mount = dir + "/drill"
        try FileSystem.mkdirs(mount)
        try FileSystem.mkdirs(dir + "/work")
        defer {
            ReplicafsCommand.run("\"$RFS\" failover cleanup vm1 \(opened) >/dev/null 2>&1; fusermount3 -u '\(mount)' 2>/dev/null")
        }
        ReplicafsCommand.must("\"$RFS\" failover vm1 \(opened) --point 2 --test --mount '\(mount)' --work-dir '\(dir)/work'")
        #expect(ReplicafsCommand.must("sha256sum < '\(mount)/a.img'") == ReplicafsCommand.must("sha256sum < '\(dir)/export-2'"))
        ReplicafsCommand.must("\"$RFS\" failover cleanup vm1 \(opened)")
        #expect(Self.holdingMarker(store) == [], "plaintext under the store after the failover")
    }
}
