import Foundation
import ReplicaTestSupport
import Testing

/// Two hosts on one machine: network namespaces joined by a veth pair (`NetworkNamespaces`),
/// every daemon a real `replicafs` process entered into its host's namespace with
/// `nsenter --net` (network only: the FUSE mounts stay visible to the test, and no thread of
/// the test process ever changes namespace, so this suite runs in the main test process).
/// Host a (10.77.0.1) is the primary: the protected mount. Host b (10.77.0.2) is the secondary:
/// `replicafs serve` on port 8084 in front of its store directory. Each host has its own run
/// and state directories, as two machines would.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct TwoSiteTests {
    final class Hosts {
        let net: NetworkNamespaces
        let root: String
        var pkiA: String { root + "/pki-a" }
        var pkiB: String { root + "/pki-b" }
        var storeB: String { root + "/store-b" }
        var disksA: String { root + "/disks-a" }
        var mntA: String { root + "/mnt-a" }
        var target: String { "replicafs://\(net.addressB):8084" }
        var servePID: Int32 = 0
        /// Other daemons started here (`serve --disks-dir` at the primary), stopped at cleanup.
        var pids: [Int32] = []
        var mounts: [(host: String, path: String)] = []

        init(_ name: String) throws {
            if let reason = NetworkNamespaces.unavailableReason { throw NamespaceError(reason) }
            net = try NetworkNamespaces()
            root = Shell.must("mktemp -d /var/tmp/rfs-test-\(name)-XXXXXX")
            Shell.must("mkdir -p '\(storeB)' '\(disksA)' '\(mntA)' '\(root)/run-a' '\(root)/run-b' '\(root)/fo'")
            // Site a's CA; a certificate for each host's address (the URL names the address).
            Shell.must("\"$RFS\" certs init --name \(net.addressA) --pki '\(pkiA)' >/dev/null && \"$RFS\" certs issue \(net.addressB) --out '\(pkiB)' --pki '\(pkiA)' >/dev/null")
        }

        /// `command` as host `h` ("a" or "b") runs it: in its network namespace, with its own
        /// run and state directories.
        func on(_ h: String, _ command: String) -> String {
            "REPLICAFS_RUN_DIR='\(root)/run-\(h)' REPLICAFS_STATE_DIR='\(root)/run-\(h)/state' nsenter --net=/var/run/netns/\(net.prefix)-\(h) \(command)"
        }

        /// Host `h`'s run and state directories for a shell command line (no network: for loops
        /// of commands that only talk to a local daemon).
        func env(_ h: String) -> String {
            "export REPLICAFS_RUN_DIR='\(root)/run-\(h)' REPLICAFS_STATE_DIR='\(root)/run-\(h)/state'; "
        }

        @discardableResult
        func must(_ h: String, _ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
            Shell.must(on(h, command), sourceLocation: sourceLocation)
        }

        /// Starts the receiver in b; returns once it listens.
        func serve() {
            let out = must("b", "\"$RFS\" serve --store '\(storeB)' --listen \(net.addressB):8084 --pki '\(pkiB)'")
            let words = out.split(separator: " ")
            if let at = words.firstIndex(of: "pid"), let p = Int32(words[at + 1].trimmingCharacters(in: .punctuationCharacters)) { servePID = p }
            #expect(servePID > 0 && out.contains("serve-8084.log"), "\(out)")
        }

        func mount(_ h: String, _ disks: String, _ mnt: String) {
            must(h, "\"$RFS\" mount '\(disks)' '\(mnt)'")
            mounts.append((h, mnt))
        }

        func protect(_ vm: String, disk: String) {
            must("a", "\"$RFS\" protect \(vm) --disks-dir '\(disksA)' --disk \(disk) --target \(target) --pki '\(pkiA)' --copy-frequency 1h")
            Shell.must(env("a") + "for i in $(seq 1 600); do \"$RFS\" status '\(mntA)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; \"$RFS\" status '\(mntA)'; exit 1")
        }

        /// A snapshot taken at the primary through its mount's daemon: the point's id.
        func snapshot(_ vm: String, app: Bool = false) throws -> Int {
            struct P: Decodable { var id: Int; var consistency: String }
            let point = try JSONDecoder().decode(P.self, from: Data(must("a", "\"$RFS\" snapshot \(vm)\(app ? " --app-consistent" : "") --wait --json").utf8))
            #expect(point.consistency == (app ? "app" : "crash"))
            return point.id
        }

        /// The point exported at the secondary from its local store: its sha256.
        func exported(_ vm: String, point: String, disk: String) -> String {
            let out = "\(root)/export-\(point)"
            must("b", "rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(storeB)' --point \(point) --disk \(disk) --to '\(out)'")
            defer { Shell.run("rm -f '\(out)'") }
            return Shell.sha256(out)
        }

        /// The receiver's counters (`GET /v1/stats`), asked from b itself (a cut link does not stop it).
        func stats() throws -> Stats {
            let out = must("b", "curl -sf --cacert '\(pkiB)/ca.pem' --cert '\(pkiB)/cert.pem' --key '\(pkiB)/key.pem' https://\(net.addressB):8084/v1/stats")
            return try JSONDecoder().decode(Stats.self, from: Data(out.utf8))
        }

        struct Stats: Decodable { var bodyBytes: Int64; var uploadBytes: Int64; var seedBytes: Int64 }

        /// Starts `serve --disks-dir` over the primary's disks directory in a; its URL.
        func serveDisksDir() -> String {
            let out = must("a", "\"$RFS\" serve --disks-dir '\(disksA)' --listen \(net.addressA):8084 --pki '\(pkiA)'")
            let words = out.split(separator: " ")
            if let at = words.firstIndex(of: "pid"), let p = Int32(words[at + 1].trimmingCharacters(in: .punctuationCharacters)) { pids.append(p) }
            #expect(!pids.isEmpty, "\(out)")
            return "replicafs://\(net.addressA):8084"
        }

        /// The counters of `serve --disks-dir` in a (`GET /v1/site/stats`), asked from a itself.
        func siteStats() throws -> SiteStats {
            let out = must("a", "curl -sf --cacert '\(pkiA)/ca.pem' --cert '\(pkiA)/cert.pem' --key '\(pkiA)/key.pem' https://\(net.addressA):8084/v1/site/stats")
            return try JSONDecoder().decode(SiteStats.self, from: Data(out.utf8))
        }

        struct SiteStats: Decodable { var bodyBytes: Int64; var diskBytes: Int64; var logBytes: Int64; var appliedLogBytes: Int64; var appliedLogs: Int64 }

        /// The primary goes down after a point; the secondary fails over to it (unplanned) and the
        /// VM writes there. Returns the failover mountpoint.
        func failedOver(_ vm: String, disk: String, megabytes: Int) throws -> String {
            Shell.must("truncate -s \(megabytes)M '\(disksA)/\(disk)' && dd if=/dev/urandom of='\(disksA)/\(disk)' bs=1M count=\(megabytes / 2) conv=notrunc status=none")
            mount("a", disksA, mntA)
            protect(vm, disk: disk)
            Shell.must("dd if=/dev/urandom of='\(mntA)/\(disk)' bs=64k count=8 seek=100 conv=notrunc,fsync status=none")
            let crash = try snapshot(vm)
            must("a", "\"$RFS\" unmount '\(mntA)'")
            mounts.removeAll { $0.path == mntA }
            let fo = root + "/fo"
            must("b", "\"$RFS\" failover \(vm) --target '\(storeB)' --point \(crash) --mount '\(fo)'")
            mounts.append(("b", fo))
            Shell.must("dd if=/dev/urandom of='\(fo)/\(disk)' bs=4k count=16 seek=2000 conv=notrunc,fsync status=none")
            return fo
        }

        struct VM: Decodable { var logBytesShipped: Int64; var bytesSent: Int64; var state: String? }
        struct M: Decodable { var vms: [VM] }

        func vmStatus() throws -> VM {
            // `status` exits with the worst health (docs/health.md): 1 when a cycle was missed
            // while the link was cut, which is what this test does. The JSON is what counts.
            let r = Shell.run(on("a", "\"$RFS\" status '\(mntA)' --json"))
            #expect(r.status <= 2, "status failed (\(r.status)): \(r.stderr)")
            let status = try JSONDecoder().decode([M].self, from: Data(r.stdout.utf8))
            return try #require(status.first?.vms.first)
        }

        func daemonLogs(_ h: String) -> String { Shell.run("cat '\(root)'/run-\(h)/*.log 2>/dev/null").stdout }

        func cleanup() {
            for m in mounts.reversed() {
                Shell.run(on(m.host, "\"$RFS\" unmount '\(m.path)' >/dev/null 2>&1") + " || umount -l '\(m.path)'")
            }
            for h in ["a", "b"] {
                Shell.run(on(h, "\"$RFS\" status --json >/dev/null 2>&1"))
            }
            for p in pids { Shell.run("kill \(p); for i in $(seq 1 100); do kill -0 \(p) 2>/dev/null || exit 0; sleep 0.05; done; kill -9 \(p)") }
            if servePID > 0 {
                Shell.run("kill \(servePID); for i in $(seq 1 100); do kill -0 \(servePID) 2>/dev/null || exit 0; sleep 0.05; done; kill -9 \(servePID)")
            }
            // Whatever still runs from this test's run directories (a failover daemon of a failed test).
            Shell.run("for f in '\(root)'/run-*/*.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; grep -o ' \(root)/[^ ]*' /proc/mounts | xargs -r -n1 umount -l")
            net.cleanup()
            Shell.run("rm -rf '\(root)'")
        }
    }

    static func withHosts(_ name: String, _ body: (Hosts) throws -> Void) throws {
        let hosts = try Hosts(name)
        defer { hosts.cleanup() }
        try body(hosts)
    }

    @Test("two hosts: points equal the source at their cut across the link; test and unplanned failover at the secondary; a planned failover started at the primary ships its last changes over the network first")
    func failoverAcrossHosts() throws {
        try Self.withHosts("twosite") { h in
            h.serve()
            Shell.must("truncate -s 32M '\(h.disksA)/r.img' && dd if=/dev/urandom of='\(h.disksA)/r.img' bs=1M count=4 seek=8 conv=notrunc status=none")
            h.mount("a", h.disksA, h.mntA)
            h.protect("r", disk: "r.img")
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/r.img' bs=64k count=40 seek=100 conv=notrunc,fsync status=none")
            let sum1 = Shell.sha256(h.mntA + "/r.img")
            let crash = try h.snapshot("r")
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/r.img' bs=4k count=50 seek=3000 conv=notrunc,fsync status=none")
            let sum2 = Shell.sha256(h.mntA + "/r.img")
            let app = try h.snapshot("r", app: true)
            #expect(app == crash + 1)
            #expect(h.exported("r", point: String(crash), disk: "r.img") == sum1)
            #expect(h.exported("r", point: "latest-app", disk: "r.img") == sum2)

            // A test failover at the secondary, against its local store: writable, then no trace.
            let fo = h.root + "/fo"
            h.must("b", "\"$RFS\" failover r --target '\(h.storeB)' --point latest --test --mount '\(fo)'")
            h.mounts.append(("b", fo))
            #expect(Shell.sha256(fo + "/r.img") == sum2)
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=4k count=10 seek=20 conv=notrunc,fsync status=none")
            #expect(Shell.sha256(fo + "/r.img") != sum2)
            h.must("b", "\"$RFS\" failover cleanup r --target '\(h.storeB)'")
            h.mounts.removeLast()
            #expect(h.exported("r", point: "latest", disk: "r.img") == sum2)
            #expect(!FileManager.default.fileExists(atPath: h.storeB + "/r/failover"))

            // An unplanned failover to the crash-consistent point: the primary is not asked.
            h.must("b", "\"$RFS\" failover r --target '\(h.storeB)' --point \(crash) --mount '\(fo)'")
            h.mounts.append(("b", fo))
            #expect(Shell.sha256(fo + "/r.img") == sum1)
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=4k count=10 seek=40 conv=notrunc,fsync status=none")
            // While failed over, the store takes no replication from the primary.
            let refused = Shell.run(h.on("a", "timeout 60 \"$RFS\" snapshot r --wait"))
            #expect(!refused.ok, "a snapshot was committed under an unplanned failover")
            h.must("b", "\"$RFS\" failover cleanup r --target '\(h.storeB)'")
            h.mounts.removeLast()

            // A test failover at the primary, reading the point over the network (--work-dir),
            // its daemon killed: `failover remount --all` (the boot unit's command, no options)
            // opens the replicafs:// store with the PKI the failover was started with.
            let foA = h.root + "/fo-a", work = h.root + "/work-a"
            Shell.must("mkdir -p '\(foA)'")
            h.must("a", "\"$RFS\" failover r --target \(h.target) --point latest --test --mount '\(foA)' --work-dir '\(work)'")
            h.mounts.append(("a", foA))
            Shell.must("dd if=/dev/urandom of='\(foA)/r.img' bs=4k count=10 seek=60 conv=notrunc,fsync status=none")
            let synced = Shell.sha256(foA + "/r.img")
            let pid = try #require(Int32(h.must("a", "\"$RFS\" status '\(foA)' --json | grep -o '\"pid\" : [0-9]*' | head -1 | grep -o '[0-9]*$'").trimmingCharacters(in: .whitespacesAndNewlines)))
            Shell.must("kill -9 \(pid)")
            let again = Shell.run(h.on("a", "\"$RFS\" failover remount --all"))
            #expect(again.ok && again.stdout.contains("remounted the test failover of VM r"), "\(again.stdout) \(again.stderr)")
            #expect(Shell.sha256(foA + "/r.img") == synced, "a fsynced write was lost")
            h.must("a", "\"$RFS\" failover cleanup r --target \(h.target)")
            h.mounts.removeLast()

            // A planned failover started at the primary: the source stops, its last changes (never
            // snapshotted) cross the network as the final point, which then equals the source.
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/r.img' bs=64k count=16 seek=200 conv=notrunc,fsync status=none")
            let sum3 = Shell.sha256(h.mntA + "/r.img")
            // No --pki: the failover opens the store with the PKI the VM was protected with.
            let planned = h.must("a", "\"$RFS\" failover r --planned --target \(h.target) --json")
            struct Planned: Decodable { var point: Int }
            let final = try JSONDecoder().decode(Planned.self, from: Data(planned.utf8)).point
            #expect(!Shell.run("grep -q ' \(h.mntA) ' /proc/mounts").ok, "the source mount still runs")
            h.mounts.removeAll { $0.path == h.mntA }
            #expect(h.exported("r", point: String(final), disk: "r.img") == sum3)
            #expect(Shell.sha256(h.disksA + "/r.img") == sum3)
            h.must("b", "\"$RFS\" failover r --target '\(h.storeB)' --point \(final) --mount '\(fo)'")
            h.mounts.append(("b", fo))
            #expect(Shell.sha256(fo + "/r.img") == sum3)
            h.must("b", "\"$RFS\" failover cleanup r --target '\(h.storeB)'")
            h.mounts.removeLast()
        }
    }

    @Test("reprotect and failback across hosts: the primary serves its disks directory, only differing blocks and the change logs cross, the primary's disk ends equal to the failed-over disk; a name leaving the directory is refused")
    func failbackAcrossHosts() throws {
        try Self.withHosts("failback") { h in
            h.serve()
            let diskBytes: Int64 = 32 << 20
            Shell.must("truncate -s 32M '\(h.disksA)/r.img' && dd if=/dev/urandom of='\(h.disksA)/r.img' bs=1M count=24 conv=notrunc status=none")
            h.mount("a", h.disksA, h.mntA)
            h.protect("r", disk: "r.img")
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/r.img' bs=64k count=8 seek=100 conv=notrunc,fsync status=none")
            let crash = try h.snapshot("r")
            // The primary goes down; its disk keeps a write the replica never saw.
            h.must("a", "\"$RFS\" unmount '\(h.mntA)'")
            h.mounts.removeAll { $0.path == h.mntA }
            Shell.must("dd if=/dev/urandom of='\(h.disksA)/r.img' bs=4k count=4 seek=10 conv=notrunc,fsync status=none")
            // Unplanned failover at the secondary; the VM writes there.
            let fo = h.root + "/fo"
            h.must("b", "\"$RFS\" failover r --target '\(h.storeB)' --point \(crash) --mount '\(fo)'")
            h.mounts.append(("b", fo))
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=4k count=16 seek=2000 conv=notrunc,fsync status=none")

            // Not while this host's own mount serves the directory.
            h.mount("a", h.disksA, h.mntA)
            let busy = Shell.run(h.on("a", "\"$RFS\" serve --disks-dir '\(h.disksA)' --listen \(h.net.addressA):8084 --pki '\(h.pkiA)' 2>&1"))
            #expect(!busy.ok && busy.stdout.contains("is served by the replicafs mount on"), "\(busy.stdout)")
            h.must("a", "\"$RFS\" unmount '\(h.mntA)'")
            h.mounts.removeAll { $0.path == h.mntA }
            // The primary is back: it serves its disks directory, nothing else.
            let out = h.must("a", "\"$RFS\" serve --disks-dir '\(h.disksA)' --listen \(h.net.addressA):8084 --pki '\(h.pkiA)'")
            let words = out.split(separator: " ")
            if let at = words.firstIndex(of: "pid"), let p = Int32(words[at + 1].trimmingCharacters(in: .punctuationCharacters)) { h.pids.append(p) }
            #expect(h.pids.count == 1, "\(out)")
            let site = "replicafs://\(h.net.addressA):8084"

            // A name outside the directory is refused, and nothing is written.
            let curl = "curl -s -o /dev/null -w '%{http_code}' --path-as-is --cacert '\(h.pkiB)/ca.pem' --cert '\(h.pkiB)/cert.pem' --key '\(h.pkiB)/key.pem'"
            for name in ["..", "..%2Fescape.img", "%2E%2E", ".replicafs"] {
                let code = h.must("b", "\(curl) -X POST 'https://\(h.net.addressA):8084/v1/site/disks/\(name)/size?size=4096'")
                print("serve --disks-dir: disk name \(name) answered \(code)")
                #expect(code.hasPrefix("4"), "\(name): \(code)")
            }
            #expect(!FileManager.default.fileExists(atPath: h.root + "/escape.img") && !FileManager.default.fileExists(atPath: h.root + "/size"))
            #expect(Int64(Shell.must("stat -c %s '\(h.root)/disks-a/r.img'").trimmingCharacters(in: .whitespacesAndNewlines)) == diskBytes)

            struct Sync: Decodable { var compared: Int64; var sent: Int64 }
            let reprotected = try JSONDecoder().decode(Sync.self, from: Data(h.must("b", "\"$RFS\" reprotect r --target '\(h.storeB)' --to \(site) --pki '\(h.pkiB)' --json").utf8))
            print("reprotect across hosts: compared \(reprotected.compared), sent \(reprotected.sent) bytes of a \(diskBytes)-byte disk")
            // The two differing regions: the write the replica never saw and the failover's writes (1 MiB blocks).
            #expect(reprotected.sent > 0 && reprotected.sent <= 3 << 20, "sent \(reprotected.sent)")
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=4k count=32 seek=5000 conv=notrunc,fsync status=none")
            let final = Shell.sha256(fo + "/r.img")

            struct Failback: Decodable { var bytesSent: Int64; var diskBytes: Int64; var to: String; var downtimeSeconds: Double }
            let back = try JSONDecoder().decode(Failback.self, from: Data(h.must("b", "\"$RFS\" failback r --target '\(h.storeB)' --mode minimize-downtime --json").utf8))
            h.mounts.removeAll { $0.path == fo }
            print("failback across hosts: \(back.bytesSent) bytes sent (change logs) of \(back.diskBytes), downtime \(String(format: "%.2f", back.downtimeSeconds)) s")
            #expect(back.to == site)
            #expect(Shell.sha256(h.disksA + "/r.img") == final)
            #expect(back.diskBytes == diskBytes && back.bytesSent > 0 && back.bytesSent < diskBytes / 16, "sent \(back.bytesSent)")
            // The replica follows the disks now at home.
            #expect(h.exported("r", point: "latest", disk: "r.img") == final)
        }
    }

    struct Failback: Decodable { var bytesSent: Int64; var bytesSentRunning: Int64; var bytesSentFinal: Int64; var diskBytes: Int64; var to: String; var mode: String }

    @Test("failback across hosts without a reprotect: full-download sends every byte of the disk, minimize-downtime compares blocks and sends only the differing ones; the primary's disk ends equal to the failed-over disk")
    func failbackWithoutReprotect() throws {
        try Self.withHosts("fbnorep") { h in
            h.serve()
            let diskBytes: Int64 = 16 << 20
            let fo = try h.failedOver("r", disk: "r.img", megabytes: 16)
            let site = h.serveDisksDir()
            let final1 = Shell.sha256(fo + "/r.img")

            // full-download, never reprotected: every byte crosses, no comparison.
            let s0 = try h.siteStats()
            let full = try JSONDecoder().decode(Failback.self, from: Data(h.must("b", "\"$RFS\" failback r --target '\(h.storeB)' --mode full-download --disks-dir \(site) --pki '\(h.pkiB)' --json").utf8))
            h.mounts.removeAll { $0.path == fo }
            let s1 = try h.siteStats()
            print("full-download across hosts: \(full.bytesSent) bytes sent (report), \(s1.diskBytes - s0.diskBytes) written at the primary, \(s1.bodyBytes - s0.bodyBytes) request body bytes, for a \(diskBytes)-byte disk")
            #expect(full.to == site && full.mode == "full-download")
            #expect(full.bytesSent == diskBytes && full.bytesSentRunning == 0 && full.diskBytes == diskBytes, "sent \(full.bytesSent)")
            #expect(s1.diskBytes - s0.diskBytes == diskBytes && s1.logBytes == s0.logBytes, "written \(s1.diskBytes - s0.diskBytes)")
            #expect(Shell.sha256(h.disksA + "/r.img") == final1)
            #expect(h.exported("r", point: "latest", disk: "r.img") == final1)

            // Again: an unplanned failover to the point the failback made, writes there and one at
            // the primary the replica never saw; minimize-downtime without a reprotect compares
            // blocks and sends only the differing 1 MiB blocks.
            h.must("b", "\"$RFS\" failover r --target '\(h.storeB)' --point latest --mount '\(fo)'")
            h.mounts.append(("b", fo))
            #expect(Shell.sha256(fo + "/r.img") == final1)
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=4k count=16 seek=3000 conv=notrunc,fsync status=none")
            Shell.must("dd if=/dev/urandom of='\(h.disksA)/r.img' bs=4k count=4 seek=10 conv=notrunc,fsync status=none")
            let final2 = Shell.sha256(fo + "/r.img")
            let back = try JSONDecoder().decode(Failback.self, from: Data(h.must("b", "\"$RFS\" failback r --target '\(h.storeB)' --mode minimize-downtime --disks-dir \(site) --pki '\(h.pkiB)' --json").utf8))
            h.mounts.removeAll { $0.path == fo }
            let s2 = try h.siteStats()
            print("minimize-downtime across hosts, not reprotected: \(back.bytesSent) bytes sent (\(back.bytesSentRunning) while running, \(back.bytesSentFinal) frozen), \(s2.diskBytes - s1.diskBytes) written at the primary")
            #expect(back.bytesSent == 2 << 20 && back.bytesSentFinal == 0, "sent \(back.bytesSent)")
            #expect(s2.diskBytes - s1.diskBytes == back.bytesSent && s2.logBytes == s1.logBytes)
            #expect(Shell.sha256(h.disksA + "/r.img") == final2)
            #expect(h.exported("r", point: "latest", disk: "r.img") == final2)
        }
    }

    @Test("the link cut in the middle of a reverse log's upload (failback after reprotect, secondary to primary): it resumes from the primary's durable size, each byte of the log is written there once, the disk ends exact")
    func reverseLinkCut() throws {
        try Self.withHosts("revcut") { h in
            let chunk: Int64 = 8 << 20
            h.serve()
            let fo = try h.failedOver("r", disk: "r.img", megabytes: 32)
            let site = h.serveDisksDir()
            h.must("b", "\"$RFS\" reprotect r --target '\(h.storeB)' --to \(site) --pki '\(h.pkiB)' --copy-frequency 1h")
            // 24 MiB logged at the secondary, shipped through a 64 Mbit/s link: about 3 s.
            Shell.must("dd if=/dev/urandom of='\(fo)/r.img' bs=1M count=24 seek=4 conv=notrunc,fsync status=none")
            let final = Shell.sha256(fo + "/r.img")
            try h.net.rate("64mbit")
            let before = try h.siteStats()
            let rc = h.root + "/failback.rc", out = h.root + "/failback.json"
            Shell.run(h.on("b", "bash -c '\"$RFS\" failback r --target \(h.storeB) --mode minimize-downtime --json > \(out) 2>&1; echo $? > \(rc)'") + " >/dev/null 2>&1 &")
            let shipping = try poll({ try h.siteStats().logBytes - before.logBytes }, until: { $0 >= chunk })
            #expect(shipping >= chunk && shipping < 24 << 20, "the reverse log transfer was not in progress: \(shipping) bytes")
            try h.net.link(up: false)
            // The sender here is the secondary: its sockets to the primary go.
            Shell.run(h.on("b", "ss -K dst \(h.net.addressA) >/dev/null 2>&1"))
            let atCut = try h.siteStats()
            usleep(3_000_000)
            let beforeUp = try h.siteStats()
            try h.net.link(up: true)
            print("reverse log transfer cut at \(atCut.logBytes - before.logBytes) bytes")
            #expect(beforeUp.logBytes - atCut.logBytes <= chunk, "bytes crossed a cut link")
            let done = poll(seconds: 90, { FileManager.default.fileExists(atPath: rc) }, until: { $0 })
            let answer = Shell.run("cat '\(out)'").stdout
            #expect(done && Shell.run("cat '\(rc)'").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the failback did not finish after the link came back: \(answer)")
            h.mounts.removeAll { $0.path == fo }
            let after = try h.siteStats()
            let written = after.logBytes - before.logBytes, logs = after.appliedLogBytes - before.appliedLogBytes
            let resumed = h.daemonLogs("b").components(separatedBy: "resuming from the receiver's durable offset").count - 1
            print("reverse log transfer: \(logs) bytes in \(after.appliedLogs - before.appliedLogs) logs replayed at the primary, \(written) written into its staged logs, \(after.bodyBytes - before.bodyBytes) request body bytes; resumed \(resumed) times")
            // Every byte of every log written once: a restart from the log's start would write more.
            #expect(logs > 24 << 20 && written == logs, "written \(written) for \(logs) bytes of logs")
            #expect(resumed >= 1, "the sender never resumed: \(h.daemonLogs("b").suffix(2000))")
            #expect(Shell.sha256(h.disksA + "/r.img") == final)
            #expect(h.exported("r", point: "latest", disk: "r.img") == final)
        }
    }

    /// Polls `value` every 20 ms until `until` holds (at most `seconds`); the last value.
    func poll<T>(seconds: Double = 60, _ value: () throws -> T, until: (T) -> Bool) rethrows -> T {
        let deadline = Date().addingTimeInterval(seconds)
        var v = try value()
        while !until(v) && Date() < deadline {
            usleep(20_000)
            v = try value()
        }
        return v
    }

    /// Cuts the link for `seconds`; the receiver's counters at the cut and just before it is up.
    func cut(_ h: Hosts, seconds: Double) throws -> (atCut: Hosts.Stats, beforeUp: Hosts.Stats) {
        try h.net.link(up: false)
        // The sender's connections go too (where the kernel can destroy sockets): it must
        // reconnect and ask the receiver where to go on, not just wait for TCP to retransmit.
        Shell.run(h.on("a", "ss -K dst \(h.net.addressB) >/dev/null 2>&1"))
        let atCut = try h.stats()
        usleep(UInt32(seconds * 1_000_000))
        let beforeUp = try h.stats()
        try h.net.link(up: true)
        return (atCut, beforeUp)
    }

    @Test("the link cut in the middle of an initial copy and of a log transfer: both resume from the acknowledged offset, nothing crosses twice beyond the interrupted chunk, points stay exact")
    func linkCut() throws {
        try Self.withHosts("linkcut") { h in
            let chunk: Int64 = 8 << 20
            h.serve()
            // 48 MiB of data through a 64 Mbit/s link: the copy takes about 6 s.
            Shell.must("dd if=/dev/urandom of='\(h.disksA)/c.img' bs=1M count=48 status=none")
            let sum0 = Shell.sha256(h.disksA + "/c.img")
            let diskBytes: Int64 = 48 << 20
            try h.net.rate("64mbit")
            h.mount("a", h.disksA, h.mntA)
            h.must("a", "\"$RFS\" protect c --disks-dir '\(h.disksA)' --disk c.img --target \(h.target) --pki '\(h.pkiA)' --copy-frequency 1h")
            // 1. Initial copy: cut once a quarter has arrived.
            let started = try poll({ try h.stats().seedBytes }, until: { $0 >= diskBytes / 4 })
            #expect(started >= diskBytes / 4 && started < diskBytes, "the copy was not in progress: \(started) of \(diskBytes) bytes")
            let copyCut = try cut(h, seconds: 3)
            print("initial copy cut at \(copyCut.atCut.seedBytes) of \(diskBytes) bytes; \(copyCut.beforeUp.seedBytes) received while cut")
            #expect(copyCut.atCut.seedBytes < diskBytes, "the copy ended before the cut")
            #expect(copyCut.beforeUp.seedBytes - copyCut.atCut.seedBytes <= chunk, "bytes crossed a cut link")
            Shell.must(h.env("a") + "for i in $(seq 1 900); do \"$RFS\" status '\(h.mntA)' | grep -q 'VM c: protected' && exit 0; sleep 0.1; done; \"$RFS\" status '\(h.mntA)'; exit 1")
            // "protected" comes with the end of the copy; the first point is the next cycle's.
            Shell.must(h.env("b") + "for i in $(seq 1 600); do \"$RFS\" points c --target '\(h.storeB)' --json 2>/dev/null | grep -q '\"id\"' && exit 0; sleep 0.1; done; echo 'no first point at the receiver' >&2; exit 1")
            let seeded = try h.stats().seedBytes
            print("initial copy: \(seeded) bytes written by the receiver for a \(diskBytes)-byte disk")
            #expect(seeded >= diskBytes && seeded <= diskBytes + chunk, "seed bytes \(seeded)")
            #expect(h.exported("c", point: "latest", disk: "c.img") == sum0)

            // 2. A 24 MiB log: cut once its first chunk has arrived. The counters are read before
            // the write: the streamer sends the active log while it is written (LogStreamer).
            let before = try h.stats(), sentBefore = try h.vmStatus()
            Shell.must("dd if=/dev/urandom of='\(h.mntA)/c.img' bs=1M count=24 seek=8 conv=notrunc,fsync status=none")
            let sum1 = Shell.sha256(h.mntA + "/c.img")
            let rc = h.root + "/snap.rc"
            Shell.run(h.on("a", "bash -c '\"$RFS\" snapshot c --wait >/dev/null 2>&1; echo $? > \(rc)'") + " >/dev/null 2>&1 &")
            let uploading = try poll({ try h.stats().uploadBytes - before.uploadBytes }, until: { $0 >= chunk })
            #expect(uploading >= chunk && uploading < 24 << 20, "the log transfer was not in progress: \(uploading) bytes")
            let logCut = try cut(h, seconds: 3)
            print("log transfer cut at \(logCut.atCut.uploadBytes - before.uploadBytes) bytes")
            #expect(logCut.beforeUp.uploadBytes - logCut.atCut.uploadBytes <= chunk, "bytes crossed a cut link")
            let done = poll(seconds: 90, { FileManager.default.fileExists(atPath: rc) }, until: { $0 })
            #expect(done && Shell.run("cat '\(rc)'").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the snapshot did not finish after the link came back")
            let after = try h.stats(), sentAfter = try h.vmStatus()
            let logBytes = sentAfter.logBytesShipped - sentBefore.logBytesShipped
            let received = after.uploadBytes - before.uploadBytes
            print("log transfer: \(logBytes) log bytes shipped, \(received) written by the receiver, \(after.bodyBytes - before.bodyBytes) request body bytes")
            #expect(logBytes > 24 << 20 && received >= logBytes && received <= logBytes + chunk, "received \(received) for \(logBytes)")
            #expect(h.exported("c", point: "latest", disk: "c.img") == sum1)
            let resumed = h.daemonLogs("a").components(separatedBy: "resuming from the receiver's durable offset").count - 1
            print("the sender resumed from the receiver's durable offset \(resumed) times")
        }
    }
}
