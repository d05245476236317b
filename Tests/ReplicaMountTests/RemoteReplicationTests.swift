import Foundation
import Testing

/// Replication to a receiver (`replicafs serve`, mutual TLS on loopback) through a real mount:
/// points equal the source at their cut, a log transfer cut by the receiver's death resumes from
/// the acknowledged offset, a receiver killed during a commit loses no committed point, and a
/// sender with another host's certificate cannot claim the VM.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct RemoteReplicationTests {
    /// A `serve` daemon on 127.0.0.1 with the site's PKI, restartable on the same port.
    final class Receiver {
        let site: Site
        var store: String { site.root + "/store" }
        var pki: String { site.root + "/pki" }
        var port = 0
        var pid: Int32 = 0
        /// The daemon's log, as `serve` names it when it starts.
        var logPath = ""
        var url: String { "replicafs://localhost:\(port)" }

        init(_ site: Site) {
            self.site = site
            Shell.must("mkdir -p '\(site.root)/store' && \"$RFS\" certs init --name localhost --pki '\(site.root)/pki' >/dev/null")
        }

        /// Starts `serve` (detached) with `environment` (test hooks); first on a free port.
        func start(_ environment: String = "") {
            let out = Shell.must("\(environment) \"$RFS\" serve --store '\(store)' --listen 127.0.0.1:\(port) --pki '\(pki)'")
            // "serving STORE on 127.0.0.1:PORT (daemon pid N, log L)"
            let words = out.split(separator: " ")
            if let at = words.firstIndex(of: "on"), let p = Int(words[at + 1].split(separator: ":").last ?? "") { port = p }
            if let at = words.firstIndex(of: "pid"), let p = Int32(words[at + 1].trimmingCharacters(in: .punctuationCharacters)) { pid = p }
            if let at = out.range(of: ", log ") { logPath = String(out[at.upperBound...].prefix { $0 != ")" }) }
            #expect(port > 0 && pid > 0 && logPath.hasSuffix("/serve-\(port).log"), "\(out)")
        }

        func kill9() {
            guard pid > 0 else { return }
            Shell.run("kill -9 \(pid); for i in $(seq 1 100); do kill -0 \(pid) 2>/dev/null || exit 0; sleep 0.05; done")
            pid = 0
        }

        func stop() {
            guard pid > 0 else { return }
            Shell.run("kill \(pid); for i in $(seq 1 100); do kill -0 \(pid) 2>/dev/null || exit 0; sleep 0.05; done; kill -9 \(pid)")
            pid = 0
        }

        func log() -> String { Shell.run("cat '\(logPath)'").stdout }
    }

    struct VM: Decodable { var logBytesShipped: Int64; var bytesSent: Int64; var lastPoint: Int? }
    struct M: Decodable { var vms: [VM] }

    func vmStatus(_ site: Site) throws -> VM {
        let status = try JSONDecoder().decode([M].self, from: Data(Shell.statusJSON(site.mnt).utf8))
        return try #require(status.first?.vms.first)
    }

    func waitProtected(_ site: Site, _ vm: String) {
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; exit 1")
    }

    func export(_ site: Site, _ receiver: Receiver, _ vm: String, point: String, disk: String) -> String {
        let out = "\(site.root)/export-\(point)-\(disk)"
        Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target \(receiver.url) --pki '\(receiver.pki)' --point \(point) --disk \(disk) --to '\(out)'")
        return out
    }

    func snapshot(_ vm: String, app: Bool = false) throws -> Int {
        struct P: Decodable { var id: Int; var consistency: String }
        let point = try JSONDecoder().decode(P.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm)\(app ? " --app-consistent" : "") --wait --json").utf8))
        #expect(point.consistency == (app ? "app" : "crash"))
        return point.id
    }

    @Test("protected to replicafs://: writes through the mount, crash and app-consistent points equal the source, compressed on the wire; another host's certificate cannot claim the VM")
    func pointsOverTheNetwork() throws {
        let site = Site("remote")
        let receiver = Receiver(site)
        defer { receiver.stop(); site.cleanup() }
        receiver.start()
        Shell.must("truncate -s 48M '\(site.disks)/r.img' && dd if=/dev/urandom of='\(site.disks)/r.img' bs=1M count=4 seek=8 conv=notrunc status=none")
        site.mount()
        Shell.must("\"$RFS\" protect r --disks-dir '\(site.disks)' --disk r.img --target \(receiver.url) --pki '\(receiver.pki)' --copy-frequency 1h --compress")
        let settings = Shell.must("cat '\(site.disks)/.replicafs/vms/r.json'").replacingOccurrences(of: "\\/", with: "/")
        #expect(settings.contains(receiver.pki) && settings.contains("replicafs://localhost:\(receiver.port)"), "\(settings)")
        waitProtected(site, "r")
        // Text (compressible) and random data through the mount.
        Shell.must("for i in $(seq 1 40); do cat /usr/share/common-licenses/*; done | head -c 4000000 | dd of='\(site.mnt)/r.img' bs=64k seek=300 conv=notrunc,fsync status=none")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/r.img' bs=64k count=8 seek=100 conv=notrunc,fsync status=none")
        let first = Shell.sha256(site.mnt + "/r.img")
        let crash = try snapshot("r")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/r.img' bs=4k count=50 seek=3000 conv=notrunc,fsync status=none")
        let second = Shell.sha256(site.mnt + "/r.img")
        let app = try snapshot("r", app: true)
        #expect(Shell.sha256(export(site, receiver, "r", point: String(crash), disk: "r.img")) == first)
        #expect(Shell.sha256(export(site, receiver, "r", point: "latest-app", disk: "r.img")) == second)
        #expect(app == crash + 1)
        let v = try vmStatus(site)
        print("compression in transit: \(v.logBytesShipped) log bytes sent as \(v.bytesSent) bytes")
        #expect(v.logBytesShipped > 4_000_000 && Double(v.bytesSent) < 0.6 * Double(v.logBytesShipped))
        #expect(Shell.must("\"$RFS\" verify r --target \(receiver.url) --pki '\(receiver.pki)' --disks-dir '\(site.disks)'; echo rc=$?").contains("rc=0"))
        let points = Shell.must("\"$RFS\" points r --target \(receiver.url) --pki '\(receiver.pki)' --json")
        #expect(points.contains("\"consistency\" : \"app\""))

        // Another host of the same site CA claims VM r: refused, logged, nothing written.
        let intruder = site.root + "/intruder-pki"
        Shell.must("\"$RFS\" certs issue intruder --out '\(intruder)' --pki '\(receiver.pki)' >/dev/null")
        let catalog = Shell.must("sha256sum '\(receiver.store)/r/catalog.json' '\(receiver.store)/r/vm.json'")
        let other = site.root + "/other"
        Shell.must("mkdir -p '\(other)' && truncate -s 1M '\(other)/r.img'")
        let claim = Shell.run("\"$RFS\" protect r --disks-dir '\(other)' --disk r.img --target \(receiver.url) --pki '\(intruder)'")
        #expect(!claim.ok && claim.stderr.contains("sender intruder refused"), "\(claim.stderr)")
        #expect(claim.stderr.split(separator: "\n").count == 1)
        #expect(Shell.must("sha256sum '\(receiver.store)/r/catalog.json' '\(receiver.store)/r/vm.json'") == catalog)
        #expect(receiver.log().contains("sender intruder refused"))
        site.unmount()
    }

    @Test("the receiver killed mid log transfer and during a commit: the transfer resumes from the acknowledged offset, no committed point is lost or changed")
    func receiverKilled() throws {
        let site = Site("remotekill")
        let receiver = Receiver(site)
        defer { receiver.stop(); site.cleanup() }
        let faults = site.root + "/faults"
        Shell.must("mkdir -p '\(faults)' && truncate -s 96M '\(site.disks)/k.img'")
        let hooks = "REPLICAFS_FAULT=receiver-upload-chunk,commit-after-copy REPLICAFS_FAULT_DIR='\(faults)'"
        receiver.start(hooks)
        site.mount()
        Shell.must("\"$RFS\" protect k --disks-dir '\(site.disks)' --disk k.img --target \(receiver.url) --pki '\(receiver.pki)' --copy-frequency 1h")
        waitProtected(site, "k")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=4 conv=notrunc,fsync status=none")
        let sum1 = Shell.sha256(site.mnt + "/k.img")
        let p1 = try snapshot("k")
        let before = try vmStatus(site)

        // 1. A 24 MiB log: the receiver dies right after the first chunk is durable.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=24 seek=32 conv=notrunc,fsync status=none")
        let sum2 = Shell.sha256(site.mnt + "/k.img")
        Shell.must("touch '\(faults)/receiver-upload-chunk.arm'")
        Shell.run("( \"$RFS\" snapshot k --wait --json > '\(faults)/snap2.json'; echo $? > '\(faults)/snap2.rc' ) >/dev/null 2>&1 &")
        #expect(waitFor(faults + "/receiver-upload-chunk.reached"), "the upload never reached its fault point")
        receiver.kill9()
        Shell.must("rm -f '\(faults)/receiver-upload-chunk.arm' '\(faults)/receiver-upload-chunk.reached'")
        let staged = (try? FileManager.default.contentsOfDirectory(atPath: receiver.store + "/k/incoming")) ?? []
        #expect(staged.count == 1, "one log staged: \(staged)")
        receiver.start(hooks)
        #expect(waitFor(faults + "/snap2.rc"))
        #expect(Shell.must("cat '\(faults)/snap2.rc'").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        let after = try vmStatus(site)
        let shipped = after.logBytesShipped - before.logBytesShipped, sent = after.bytesSent - before.bytesSent
        print("log transfer resumed: \(shipped) log bytes, \(sent) bytes sent")
        // Resumed: nothing sent twice beyond the interrupted chunk (8 MiB); from scratch it would be 8 MiB more.
        #expect(shipped > 24 << 20 && sent < shipped + (8 << 20), "sent \(sent) for \(shipped)")
        let p2 = p1 + 1
        #expect(Shell.sha256(export(site, receiver, "k", point: String(p2), disk: "k.img")) == sum2)

        // 2. kill -9 during a commit: the logs are in the pending point, the catalog does not name it.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=8 seek=70 conv=notrunc,fsync status=none")
        let sum3 = Shell.sha256(site.mnt + "/k.img")
        let catalogBefore = Shell.must("cat '\(receiver.store)/k/catalog.json'")
        Shell.must("touch '\(faults)/commit-after-copy.arm'")
        Shell.run("( \"$RFS\" snapshot k; echo $? > '\(faults)/snap3.rc' ) >/dev/null 2>&1 &")
        #expect(waitFor(faults + "/commit-after-copy.reached"), "the commit never reached its fault point")
        #expect(Shell.must("ls '\(receiver.store)/k/points/'").contains(".pending"))
        receiver.kill9()
        Shell.must("rm -f '\(faults)/commit-after-copy.arm'")
        #expect(Shell.must("cat '\(receiver.store)/k/catalog.json'") == catalogBefore)
        receiver.start()
        // Committed points unchanged; the interrupted point is made by the retry or the next snapshot.
        #expect(Shell.sha256(export(site, receiver, "k", point: String(p1), disk: "k.img")) == sum1)
        #expect(Shell.sha256(export(site, receiver, "k", point: String(p2), disk: "k.img")) == sum2)
        #expect(waitFor(faults + "/snap3.rc"))
        let p4 = try snapshot("k")
        #expect(Shell.sha256(export(site, receiver, "k", point: String(p4), disk: "k.img")) == sum3)
        #expect(!Shell.must("ls '\(receiver.store)/k/points/'").contains("pending"))
        site.unmount()
    }

    func waitFor(_ path: String, seconds: Double = 120) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !FileManager.default.fileExists(atPath: path) && Date() < deadline { usleep(20_000) }
        return FileManager.default.fileExists(atPath: path)
    }
}
