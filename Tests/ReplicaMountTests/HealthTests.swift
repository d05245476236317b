import Foundation
import Testing

/// Retries and health on real mounts: a target store that fills up (a small tmpfs) is retried
/// on the back-off and completes once space is freed, with nothing lost; a non-recoverable
/// error holds the VM in Critical, untouched by retries, until `resume`.
/// REPLICAFS_TIME_SCALE=0.01 runs the 1, 2, 4, 8, 10 minute back-off as 0.6, 1.2, 2.4, 4.8, 6 s.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct HealthTests {
    struct Mount: Decodable { var vms: [VM] }
    struct VM: Decodable {
        var vm: String
        var state: String
        var health: String
        var healthReasons: [String]
        var retryAttempt: Int
        var nextRetryAt: String?
        var lastError: String?
        var lastPoint: Int?
    }

    func findState(_ site: Site, _ name: String) -> (VM?, String) {
        let r = Shell.run("\"$RFS\" status '\(site.mnt)' --json")
        let mounts = try? JSONDecoder().decode([Mount].self, from: Data(r.stdout.utf8))
        return (mounts?.first?.vms.first { $0.vm == name }, r.stdout + r.stderr)
    }

    func vmState(_ site: Site, _ name: String) throws -> VM {
        let (state, output) = findState(site, name)
        return try #require(state, "no VM \(name) in \(output)")
    }

    /// Polls the VM's state until `done` holds (up to `seconds`); returns the last state seen.
    func waitFor(_ site: Site, _ name: String, seconds: Double, _ done: (VM) -> Bool) throws -> VM {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let state = findState(site, name).0, done(state) { return state }
            usleep(100_000)
        }
        return try vmState(site, name)
    }

    func pointIDs(_ site: Site, _ vm: String) throws -> [Int] {
        let r = Shell.run("\"$RFS\" points \(vm) --target '\(site.root)/store' --json")
        guard r.ok else { return [] }
        struct Row: Decodable { var id: Int }
        return try JSONDecoder().decode([Row].self, from: Data(r.stdout.utf8)).map(\.id)
    }

    /// The point ids in the store's catalog, read directly (the CLI wants a writable store).
    func catalogIDs(_ site: Site, _ vm: String) throws -> [Int] {
        struct Catalog: Decodable { struct P: Decodable { var id: Int }; var points: [P] }
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(site.root)/store/\(vm)/catalog.json"))
        return try JSONDecoder().decode(Catalog.self, from: data).points.map(\.id)
    }

    func exportSum(_ site: Site, _ vm: String, point: String, disk: String) -> String {
        let out = "\(site.root)/export-\(point)"
        Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(site.root)/store' --point \(point) --disk \(disk) --to '\(out)'")
        defer { Shell.run("rm -f '\(out)'") }
        return Shell.sha256(out)
    }

    func sealedLogBytes(_ site: Site, _ image: String) -> Int {
        site.logs(of: image).dropLast().reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
    }

    @Test("target store full: ENOSPC is retried on the back-off, the source keeps logging, and once the store grows every point exports its cut",
          arguments: [(compress: false, mib: 24), (compress: true, mib: 24)])
    func targetStoreFull(compress: Bool, mib: Int) throws {
        let site = Site("full")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && mount -t tmpfs -o size=16M rfs-full '\(store)'")
        site.extraMounts.append(store)
        Shell.must("truncate -s 64M '\(site.disks)/d.img' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=1 conv=notrunc status=none")
        let sum0 = Shell.sha256(site.disks + "/d.img")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        // A 1 h copy frequency: points come from snapshots and from retries only, so every
        // point's cut is known. The first cycle runs right after the initial copy.
        Shell.must("\"$RFS\" protect hv --disks-dir '\(site.disks)' --disk d.img --target '\(store)' --copy-frequency 1h --rpo 4s\(compress ? " --compress" : "")")
        var s = try waitFor(site, "hv", seconds: 20) { $0.lastPoint != nil }
        #expect(s.lastPoint == 1 && s.health == "normal", "\(s)")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=1 seek=2 conv=notrunc,fsync status=none")
        let sumA = Shell.sha256(site.mnt + "/d.img")
        Shell.must("\"$RFS\" snapshot hv")
        let before = try pointIDs(site, "hv")
        #expect(before == [1, 2])

        // 24 MiB of new data does not fit in what is left of 16 MiB: storing the point's redo log
        // (or inflating it into incoming/) runs out of space partway, and the retry drops what
        // the failed attempt stored.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=\(mib) seek=8 conv=notrunc,fsync status=none")
        let failed = Shell.run("\"$RFS\" snapshot hv")
        #expect(!failed.ok && failed.stderr.contains("No space left on device") && failed.stderr.split(separator: "\n").count == 1, "\(failed.stderr)")
        s = try vmState(site, "hv")
        #expect(s.health == "warning" && s.retryAttempt >= 1 && s.nextRetryAt != nil, "\(s)")
        #expect(s.lastError?.contains("No space left on device") == true)
        #expect(s.healthReasons.contains { $0.hasPrefix("target store full") && $0.contains("next retry at") }, "\(s.healthReasons)")
        let text = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(text.status == 1, "status exit code \(text.status): warning")
        #expect(text.stdout.contains("health: warning, retry ") && text.stdout.contains("target store full"), "\(text.stdout)")
        #expect(Shell.must("\"$RFS\" jobs").contains("hv\tdelta replication\tretry at "))

        // The source keeps logging meanwhile; the failed commits leave the store as it was.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=1M count=1 seek=40 conv=notrunc,fsync status=none")
        let sumB = Shell.sha256(site.mnt + "/d.img")
        #expect(sealedLogBytes(site, "d.img") > mib << 20)
        // Retries come on the back-off (0.6 s, 1.2 s, 2.4 s, ...), and each fails again.
        s = try waitFor(site, "hv", seconds: 10) { $0.retryAttempt >= 3 && $0.healthReasons.contains { $0.contains("exceeds the RPO of 4 s") } }
        #expect(s.retryAttempt >= 3 && s.retryAttempt <= 6, "attempts \(s.retryAttempt): the back-off was not followed")
        #expect(s.healthReasons.contains { $0.contains("exceeds the RPO of 4 s") }, "\(s.healthReasons)")
        #expect(try pointIDs(site, "hv") == before)
        #expect(exportSum(site, "hv", point: "latest", disk: "d.img") == sumA)
        #expect(sealedLogBytes(site, "d.img") > (mib + 1) << 20)
        // Compressed transfers that failed left nothing in the store's incoming directory.
        let incoming = (try? FileManager.default.contentsOfDirectory(atPath: store + "/hv/incoming")) ?? []
        #expect(incoming.isEmpty, "left in incoming/: \(incoming)")

        // Space comes back: the next retry ships everything that accumulated.
        Shell.must("mount -o remount,size=256M '\(store)'")
        s = try waitFor(site, "hv", seconds: 20) { $0.retryAttempt == 0 && $0.lastError == nil }
        #expect(s.retryAttempt == 0 && s.lastError == nil && s.nextRetryAt == nil, "\(s)")
        #expect(!s.healthReasons.contains { $0.hasPrefix("target store full") })
        let after = try pointIDs(site, "hv")
        #expect(after == [1, 2, 3], "\(after)")
        let expected = [1: sum0, 2: sumA, 3: sumB]
        for id in after { #expect(exportSum(site, "hv", point: String(id), disk: "d.img") == expected[id], "point \(id)") }
        #expect(sealedLogBytes(site, "d.img") == 0, "shipped logs stay at the source")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: store + "/hv/points")) ?? []).allSatisfy { !$0.hasSuffix(".pending") })
        // A later point still exports exactly.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=64k count=3 seek=5 conv=notrunc,fsync status=none")
        let sumC = Shell.sha256(site.mnt + "/d.img")
        Shell.must("\"$RFS\" snapshot hv")
        #expect(exportSum(site, "hv", point: "latest", disk: "d.img") == sumC)
        site.unmount()
    }

    @Test("non-recoverable errors: a read-only store and a lost replica go Critical, are not retried, and resume clears them")
    func criticalUntilResume() throws {
        let site = Site("critical")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && truncate -s 16M '\(site.disks)/c.img'")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        Shell.must("\"$RFS\" protect cv --disks-dir '\(site.disks)' --disk c.img --target '\(store)' --copy-frequency 1s")
        var s = try waitFor(site, "cv", seconds: 20) { $0.lastPoint != nil }
        #expect(s.health == "normal" && Shell.run("\"$RFS\" status '\(site.mnt)'").status == 0, "\(s)")

        // The store refuses writes (root ignores modes; a read-only bind mount does not).
        Shell.must("mount --bind '\(store)' '\(store)' && mount -o remount,bind,ro '\(store)'")
        site.extraMounts.append(store)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/c.img' bs=64k count=16 seek=3 conv=notrunc,fsync status=none")
        s = try waitFor(site, "cv", seconds: 10) { $0.health == "critical" }
        #expect(s.health == "critical" && s.retryAttempt == 1 && s.nextRetryAt == nil, "\(s)")
        #expect(s.healthReasons.first?.contains("is not writable") == true && s.healthReasons.first?.contains("replicafs resume cv") == true, "\(s.healthReasons)")
        let points = try catalogIDs(site, "cv")
        // Not retried: no attempt in 3 s (a 1 s frequency would have made three), also after the cause is gone.
        Shell.must("sleep 1.5 && umount '\(store)' && sleep 1.5")
        site.extraMounts.removeAll()
        s = try vmState(site, "cv")
        #expect(s.health == "critical" && s.retryAttempt == 1, "\(s)")
        #expect(try catalogIDs(site, "cv") == points && !points.isEmpty)
        let text = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(text.status == 2 && text.stdout.contains("health: critical"), "exit \(text.status): \(text.stdout)")
        #expect(Shell.must("\"$RFS\" jobs").contains("cv\tdelta replication\tcritical"))
        let refused = Shell.run("\"$RFS\" snapshot cv")
        #expect(!refused.ok && refused.stderr.contains("is Critical") && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")

        Shell.must("\"$RFS\" resume cv")
        s = try waitFor(site, "cv", seconds: 10) { $0.health != "critical" && $0.lastError == nil && $0.retryAttempt == 0 }
        #expect(s.health != "critical" && s.retryAttempt == 0 && s.lastError == nil, "\(s)")
        // The cycles due while Critical (one a second) were missed: over 20% of the hour's, a Warning.
        #expect(s.health == "warning" && s.healthReasons.contains { $0.contains("replication cycles missed in the last hour") }, "\(s)")
        let sum = Shell.sha256(site.mnt + "/c.img")
        Shell.must("\"$RFS\" snapshot cv")
        #expect(exportSum(site, "cv", point: "latest", disk: "c.img") == sum)

        // The replica vanishes from the store: not silently copied again, Critical until resume.
        Shell.must("rm -rf '\(store)/cv'")
        s = try waitFor(site, "cv", seconds: 10) { $0.health == "critical" }
        #expect(s.health == "critical" && s.healthReasons.first?.contains("VM cv not found in target store") == true, "\(s)")
        Shell.must("sleep 1")
        #expect(!FileManager.default.fileExists(atPath: store + "/cv"))
        Shell.must("\"$RFS\" resume cv")
        s = try waitFor(site, "cv", seconds: 20) { $0.state == "protected" && $0.health != "critical" && $0.lastError == nil }
        #expect(s.health != "critical", "\(s)")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/c.img' bs=4k count=5 seek=9 conv=notrunc,fsync status=none")
        let sum2 = Shell.sha256(site.mnt + "/c.img")
        Shell.must("\"$RFS\" snapshot cv")
        #expect(exportSum(site, "cv", point: "latest", disk: "c.img") == sum2)
        site.unmount()
    }

    @Test("an initial copy that fills the store is retried on the back-off and ends equal to the source once space is there")
    func initialCopyIntoAFullStore() throws {
        let site = Site("full-initial")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && mount -t tmpfs -o size=8M rfs-full-initial '\(store)'")
        site.extraMounts.append(store)
        Shell.must("dd if=/dev/urandom of='\(site.disks)/big.img' bs=1M count=20 status=none")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        Shell.must("\"$RFS\" protect iv --disks-dir '\(site.disks)' --disk big.img --target '\(store)' --copy-frequency 1h")
        var s = try waitFor(site, "iv", seconds: 10) { $0.retryAttempt >= 2 }
        #expect(s.state == "initial replication" && s.health == "warning" && s.retryAttempt >= 2, "\(s)")
        #expect(s.lastError?.contains("No space left on device") == true, "\(s)")
        #expect(!FileManager.default.fileExists(atPath: store + "/iv/catalog.json"))
        // Writes go on meanwhile, logged at the source.
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/big.img' bs=64k count=8 seek=33 conv=notrunc,fsync status=none")
        Shell.must("mount -o remount,size=128M '\(store)'")
        s = try waitFor(site, "iv", seconds: 20) { $0.state == "protected" && $0.lastPoint != nil }
        #expect(s.state == "protected" && s.retryAttempt == 0 && s.lastError == nil, "\(s)")
        let sum = Shell.sha256(site.mnt + "/big.img")
        Shell.must("\"$RFS\" snapshot iv")
        #expect(exportSum(site, "iv", point: "latest", disk: "big.img") == sum)
        site.unmount()
    }

    @Test("bad input: resume of an unknown VM, a zero or malformed RPO")
    func badInput() {
        let site = Site("health-bad")
        defer { site.cleanup() }
        Shell.must("mkdir -p '\(site.root)/store' && truncate -s 4M '\(site.disks)/a.img'")
        func refuses(_ args: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let r = Shell.run("\"$RFS\" \(args)")
            #expect(!r.ok && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(message),
                    "replicafs \(args): \(r.stderr)", sourceLocation: sourceLocation)
        }
        refuses("resume nope", "unknown VM nope")
        refuses("protect v --disks-dir '\(site.disks)' --disk a.img --target '\(site.root)/store' --rpo 0", "bad --rpo '0'")
        refuses("protect v --disks-dir '\(site.disks)' --disk a.img --target '\(site.root)/store' --rpo soon", "bad duration 'soon'")
        #expect(!FileManager.default.fileExists(atPath: site.disks + "/.replicafs/vms/v.json"))
    }
}
