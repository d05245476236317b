import Foundation
import Testing

/// End to end against Ceph RGW (the cluster `Tools/ceph.sh` runs; Tools/test.sh starts one and
/// sets REPLICAFS_S3_ENV): a VM on a real mount protected to `s3://BUCKET/PREFIX` by the real
/// CLI and mount daemon, points checked by sha256, retention and merge, failovers mounted from
/// the bucket, reprotect and failback, radosgw killed mid upload and mid commit, refused
/// credentials and a missing bucket. Under CI a missing cluster fails these tests.
@Suite(.serialized, .timeLimit(.minutes(8)), .enabled(if: S3Site.enabled))
struct ObjectStoreSiteTests {
    @Test("two disks protected to s3://: crash and app-consistent points equal the source, retention merges into the base and the rest still export exactly, a test failover mounts from the bucket without downloading the disks")
    func pointsMergeAndDrill() throws {
        let s = try S3Site("points")
        defer { s.cleanup() }
        let site = s.site
        s.sh("dd if=/dev/urandom of='\(site.disks)/os.img' bs=1M count=8 status=none && truncate -s 24M '\(site.disks)/os.img' && truncate -s 64M '\(site.disks)/data.img'")
        s.mount()
        s.sh("\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk os.img --disk data.img --target \(s.target) --copy-frequency 1h --retention 25s")
        s.waitProtected("vm")
        s.sh("dd if=/dev/urandom of='\(site.mnt)/os.img' bs=64k count=20 seek=50 conv=notrunc,fsync status=none && dd if=/dev/urandom of='\(site.mnt)/data.img' bs=1M count=1 seek=40 conv=notrunc,fsync status=none")
        let crash = try s.snapshot("vm")
        let os1 = s.sha(site.mnt + "/os.img"), data1 = s.sha(site.mnt + "/data.img")
        s.sh("dd if=/dev/urandom of='\(site.mnt)/os.img' bs=4k count=30 seek=1000 conv=notrunc,fsync status=none && dd if=/dev/urandom of='\(site.mnt)/data.img' bs=4k count=3 seek=77 conv=notrunc,fsync status=none")
        let app = try s.snapshot("vm", app: true)
        // The app point's cut is before this moment: 26 s from here it is past the retention.
        let appAt = Date()
        let os2 = s.sha(site.mnt + "/os.img"), data2 = s.sha(site.mnt + "/data.img")
        #expect(app > crash)
        #expect(s.exported("vm", point: String(crash), disk: "os.img") == os1)
        #expect(s.exported("vm", point: String(crash), disk: "data.img") == data1)
        #expect(s.exported("vm", point: "latest-app", disk: "os.img") == os2)
        #expect(s.exported("vm", point: "latest-app", disk: "data.img") == data2)
        #expect(s.sh("\"$RFS\" verify vm --target \(s.target) --disks-dir '\(site.disks)'; echo rc=$?").contains("rc=0"))

        // A test failover at the crash point, from the bucket: mounting fetches tables and
        // indexes, not the disks (88 MiB); reads come by range into the cache, writes stay local.
        let cacheBefore = s.cacheBytes()
        let drill = try s.failover("vm", "--point \(crash) --test", mount: site.root + "/drill")
        let cacheAtMount = s.cacheBytes() - cacheBefore
        #expect(drill.point == crash)
        #expect(cacheAtMount < 4 << 20, "the failover mount fetched \(cacheAtMount) bytes")
        #expect(s.sha(site.root + "/drill/os.img") == os1)
        #expect(s.sha(site.root + "/drill/data.img") == data1)
        s.sh("dd if=/dev/urandom of='\(site.root)/drill/data.img' bs=4k count=2 seek=9 conv=notrunc,fsync status=none")
        #expect(s.sha(site.root + "/drill/data.img") != data1)
        s.sh("\"$RFS\" failover cleanup vm --target \(s.target)")
        #expect(s.exported("vm", point: String(crash), disk: "data.img") == data1, "the drill's writes reached the bucket")

        // Past the retention the next point expires the older ones: they merge into the base
        // (new chunk objects, a new base table) and every point left exports exactly.
        let basesBefore = Set(s.keys("vms/vm/base/"))
        let wait = 26 - Date().timeIntervalSince(appAt)
        if wait > 0 { s.sh("sleep \(String(format: "%.1f", wait))") }
        s.sh("dd if=/dev/urandom of='\(site.mnt)/os.img' bs=4k count=5 seek=3000 conv=notrunc,fsync status=none")
        let last = try s.snapshot("vm")
        let os3 = s.sha(site.mnt + "/os.img")
        let ids = try s.pointIDs("vm")
        #expect(!ids.contains(crash) && !ids.contains(app) && ids.contains(last), "\(ids)")
        #expect(Set(s.keys("vms/vm/base/")) != basesBefore, "no merge wrote a new base")
        #expect(s.exported("vm", point: String(last), disk: "os.img") == os3)
        #expect(s.exported("vm", point: String(last), disk: "data.img") == data2)
        let gone = s.run("\"$RFS\" export vm --target \(s.target) --point \(crash) --disk os.img --to '\(site.root)/gone'")
        #expect(!gone.ok && gone.stderr.contains("recovery point \(crash) not found"), "\(gone.stderr)")
        site.unmount()
    }

    @Test("unplanned failover from the bucket with the primary gone: latest mounts exactly, takes writes locally; reprotect and failback bring the failed-over disks home, checked by sha256")
    func unplannedReprotectFailback() throws {
        let s = try S3Site("failback")
        defer { s.cleanup() }
        let site = s.site
        let fm = site.root + "/fo"
        s.sh("dd if=/dev/urandom of='\(site.disks)/os.img' bs=1M count=6 status=none && truncate -s 16M '\(site.disks)/os.img' && truncate -s 32M '\(site.disks)/data.img'")
        s.mount()
        s.sh("\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk os.img --disk data.img --target \(s.target) --copy-frequency 1h")
        s.waitProtected("vm")
        s.sh("dd if=/dev/urandom of='\(site.mnt)/os.img' bs=64k count=8 seek=30 conv=notrunc,fsync status=none && dd if=/dev/urandom of='\(site.mnt)/data.img' bs=1M count=2 seek=5 conv=notrunc,fsync status=none")
        let p = try s.snapshot("vm")
        let os1 = s.sha(site.mnt + "/os.img"), data1 = s.sha(site.mnt + "/data.img")
        // The primary is lost: its daemon dies, its disks are gone.
        let pid = try #require(site.daemonPID())
        Shell.run("kill -9 \(pid); sleep 0.2; umount -l '\(site.mnt)'")
        s.sh("rm -rf '\(site.disks)'")

        let fo = try s.failover("vm", "--point latest", mount: fm)
        #expect(fo.point >= p, "failed over at \(fo.point), older than the last point \(p)")
        #expect(s.sha(fm + "/os.img") == os1)
        #expect(s.sha(fm + "/data.img") == data1)
        // The failed-over VM runs: writes go to the local copy-on-write layer, not the bucket.
        s.sh("dd if=/dev/urandom of='\(fm)/os.img' bs=4k count=64 seek=100 conv=notrunc,fsync status=none && dd if=/dev/urandom of='\(fm)/data.img' bs=1M count=1 seek=20 conv=notrunc,fsync status=none")
        #expect(s.exported("vm", point: String(p), disk: "os.img") == os1, "a failover write reached the point")
        #expect(s.sha(fm + "/os.img") != os1)

        // Reprotect toward the original site (recreated), then fail back there.
        struct Sync: Decodable { var sent: Int64 }
        let reprotect = try JSONDecoder().decode(Sync.self, from: Data(s.sh("\"$RFS\" reprotect vm --target \(s.target) --disks-dir '\(site.disks)' --copy-frequency 1s --json").utf8))
        #expect(reprotect.sent > 0)
        #expect(s.sha(site.disks + "/os.img") == s.sha(fm + "/os.img"), "reprotect left the original site behind")
        #expect(s.sha(site.disks + "/data.img") == s.sha(fm + "/data.img"))
        s.sh("dd if=/dev/urandom of='\(fm)/data.img' bs=4k count=3 seek=300 conv=notrunc,fsync status=none")
        let osFO = s.sha(fm + "/os.img"), dataFO = s.sha(fm + "/data.img")
        s.sh("\"$RFS\" failback vm --target \(s.target) --mode minimize-downtime --json")
        #expect(s.sha(site.disks + "/os.img") == osFO)
        #expect(s.sha(site.disks + "/data.img") == dataFO)
        #expect(!Shell.run("grep -q ' \(fm) ' /proc/mounts").ok, "the failover mount is still there")
        // Home again: protection to the bucket runs in the original direction.
        s.mount()
        s.sh("dd if=/dev/urandom of='\(site.mnt)/os.img' bs=4k count=4 seek=77 conv=notrunc,fsync status=none")
        let home = s.sha(site.mnt + "/os.img")
        let q = try s.snapshot("vm")
        #expect(s.exported("vm", point: String(q), disk: "os.img") == home)
        #expect(s.exported("vm", point: String(q), disk: "data.img") == dataFO)
        site.unmount()
    }

    /// Waits for `condition` (a shell test) up to `seconds`.
    func waitFor(_ s: S3Site, _ condition: String, seconds: Int = 60) -> Bool {
        s.run("for i in $(seq 1 \(seconds * 10)); do \(condition) && exit 0; sleep 0.1; done; exit 1").ok
    }

    func unfinishedUploads(_ s: S3Site) -> Int {
        Int(s.sh("python3 -c 'import boto3; print(len(boto3.client(\"s3\").list_multipart_uploads(Bucket=\"\(s.bucket)\").get(\"Uploads\", [])))'")) ?? -1
    }

    /// A snapshot that ran into the dead radosgw either made its point (0) or failed with the
    /// S3 error, one line, and the engine's back-off retry makes the point.
    func snapshotEnded(_ s: S3Site, _ base: String) {
        let rc = s.sh("cat '\(base).rc'"), err = s.sh("cat '\(base).err'")
        #expect(rc == "0" || (err.contains("at \(s.env["AWS_ENDPOINT_URL"]!) failed") && err.split(separator: "\n").count == 1), "rc \(rc): \(err)")
    }

    /// The VM's points once there are `count` of them (up to 60 s), else the last listing.
    func waitForPoints(_ s: S3Site, count: Int) -> [Int] {
        var ids: [Int] = []
        for _ in 0..<120 {
            ids = (try? s.pointIDs("vm")) ?? []
            if ids.count >= count { break }
            usleep(500_000)
        }
        return ids
    }

    @Test("radosgw killed with kill -9 mid multipart upload and mid commit: replication resumes once it is back, every point stays exact, no half point is listed")
    func radosgwKilled() throws {
        let s = try S3Site("rgwkill")
        let faults = s.site.root + "/faults"
        let rgwPID = { Shell.run("cat '\(s.env["REPLICAFS_RGW_PIDFILE"]!)'").stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/ceph.sh").path
        let restart = { s.sh("bash '\(script)' restart-rgw --dir '\(s.env["REPLICAFS_CEPH_DIR"]!)' >/dev/null") }
        defer {
            Shell.run("rm -f '\(faults)'/*.arm")
            if !Shell.run("kill -0 \(rgwPID())").ok { restart() }
            s.cleanup()
        }
        let site = s.site
        // 128 MiB: the 43 MiB of logs this test leaves pending while radosgw is down stay under
        // half the disk, so no resync is required and the outcome does not depend on whether the
        // clock is inside the default resync window (18:30-06:00) when the test runs.
        s.sh("mkdir -p '\(faults)' && truncate -s 128M '\(site.disks)/k.img'")
        s.mount("REPLICAFS_FAULT=s3-commit-before-catalog,s3-upload-part REPLICAFS_FAULT_DIR='\(faults)' REPLICAFS_TIME_SCALE=0.01")
        s.sh("\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk k.img --target \(s.target) --copy-frequency 1h")
        s.waitProtected("vm")
        // "protected" comes with the end of the copy; the first point is the next cycle's.
        for _ in 0..<300 where try s.pointIDs("vm").isEmpty { usleep(100_000) }
        s.sh("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=2 conv=notrunc,fsync status=none")
        let p1 = try s.snapshot("vm")
        let sum1 = s.sha(site.mnt + "/k.img")
        let base = try s.pointIDs("vm")
        #expect(base.last == p1)

        // 1. A 40 MiB log goes up as a multipart upload (16 MiB parts): radosgw dies while a
        // part is stored and the upload is not complete.
        s.sh("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=40 seek=8 conv=notrunc,fsync status=none")
        let sum2 = s.sha(site.mnt + "/k.img")
        s.sh("touch '\(faults)/s3-upload-part.arm'")
        s.run("( \"$RFS\" snapshot vm --wait --json > '\(faults)/snap2.json' 2>'\(faults)/snap2.err'; echo $? > '\(faults)/snap2.rc' ) >/dev/null 2>&1 &")
        #expect(waitFor(s, "test -e '\(faults)/s3-upload-part.reached'", seconds: 60), "the upload never reached its fault point")
        #expect(unfinishedUploads(s) == 1)
        s.sh("kill -9 \(rgwPID())")
        s.sh("rm -f '\(faults)/s3-upload-part.arm'")
        // Down: the listing fails with a clear error, never shows a point that is not whole.
        let during = s.run("\"$RFS\" points vm --target \(s.target)")
        #expect(!during.ok && during.stderr.contains("at \(s.env["AWS_ENDPOINT_URL"]!) failed: connection refused"), "\(during)")
        #expect(waitFor(s, "test -s '\(faults)/snap2.rc'", seconds: 60))
        s.sh("sleep 1")
        restart()
        snapshotEnded(s, faults + "/snap2")
        // The engine's back-off retry resumes the upload (its stored parts kept) and commits.
        let ids2 = waitForPoints(s, count: base.count + 1)
        #expect(Array(ids2.prefix(base.count)) == base, "\(ids2)")
        #expect(ids2.count == base.count + 1, "\(ids2)")
        #expect(unfinishedUploads(s) == 0, "\(s.sh("python3 -c 'import boto3; print([u[\"Key\"] for u in boto3.client(\"s3\").list_multipart_uploads(Bucket=\"\(s.bucket)\").get(\"Uploads\", [])])'")) \(s.keys("vms/vm/logs/"))")
        #expect(s.exported("vm", point: String(p1), disk: "k.img") == sum1)
        #expect(s.exported("vm", point: String(ids2.last!), disk: "k.img") == sum2)

        // 2. radosgw dies while a commit holds between its logs and its catalog generation.
        s.sh("dd if=/dev/urandom of='\(site.mnt)/k.img' bs=1M count=3 seek=50 conv=notrunc,fsync status=none")
        let sum3 = s.sha(site.mnt + "/k.img")
        s.sh("touch '\(faults)/s3-commit-before-catalog.arm'")
        s.run("( \"$RFS\" snapshot vm --wait > /dev/null 2>'\(faults)/snap3.err'; echo $? > '\(faults)/snap3.rc' ) >/dev/null 2>&1 &")
        #expect(waitFor(s, "test -e '\(faults)/s3-commit-before-catalog.reached'", seconds: 60), "the commit never reached its fault point")
        #expect(try s.pointIDs("vm") == ids2, "a point was listed before its catalog generation")
        s.sh("kill -9 \(rgwPID())")
        s.sh("rm -f '\(faults)/s3-commit-before-catalog.arm'")
        #expect(waitFor(s, "test -s '\(faults)/snap3.rc'", seconds: 60))
        s.sh("sleep 1")
        restart()
        snapshotEnded(s, faults + "/snap3")
        let ids3 = waitForPoints(s, count: ids2.count + 1)
        #expect(Array(ids3.prefix(ids2.count)) == ids2 && ids3.count == ids2.count + 1, "\(ids3)")
        #expect(s.exported("vm", point: String(ids3.last!), disk: "k.img") == sum3)
        #expect(s.exported("vm", point: String(ids2.last!), disk: "k.img") == sum2)
        #expect(s.exported("vm", point: String(p1), disk: "k.img") == sum1)
        let status = s.run("\"$RFS\" status '\(site.mnt)'")
        #expect(!status.stdout.contains("critical"), "\(status.stdout)")
        site.unmount()
    }

    @Test("refused credentials: the VM goes Critical naming them and nothing is written; a missing bucket and a malformed target are clear one-line errors")
    func credentialsAndBucket() throws {
        let s = try S3Site("creds")
        defer { s.cleanup() }
        let site = s.site
        s.sh("truncate -s 8M '\(site.disks)/c.img' && truncate -s 8M '\(site.disks)/m.img'")
        // The daemon's secret is wrong (rotated, expired): protect itself is accepted with good keys.
        s.mount("AWS_SECRET_ACCESS_KEY=wrong-\(UInt32.random(in: 0...UInt32.max))")
        s.sh("\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk c.img --target \(s.target) --copy-frequency 1s")
        let before = s.keys("")
        struct VM: Decodable { var health: String; var healthReasons: [String] }
        struct M: Decodable { var vms: [VM] }
        var vm: VM?
        for _ in 0..<100 {
            let st = try JSONDecoder().decode([M].self, from: Data(Shell.run("\"$RFS\" status '\(site.mnt)' --json").stdout.utf8))
            vm = st.first?.vms.first
            if vm?.health == "critical" { break }
            usleep(100_000)
        }
        #expect(vm?.health == "critical", "\(String(describing: vm))")
        #expect(vm?.healthReasons.first?.contains("credentials refused by \(s.env["AWS_ENDPOINT_URL"]!): SignatureDoesNotMatch") == true, "\(String(describing: vm?.healthReasons))")
        #expect(s.keys("") == before, "objects were written with refused credentials")
        #expect(s.keys("vms/vm/catalog/").isEmpty)

        // A bucket that does not exist; a malformed target; wrong keys at the CLI.
        let missing = s.run("\"$RFS\" protect other --disks-dir '\(site.disks)' --disk m.img --target s3://no-such-bucket-\(UInt32.random(in: 0...UInt32.max))/p")
        #expect(!missing.ok && missing.stderr.contains("does not exist at \(s.env["AWS_ENDPOINT_URL"]!)") && missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        let malformed = s.run("\"$RFS\" protect other --disks-dir '\(site.disks)' --disk m.img --target s3://Bad_Bucket/p")
        #expect(!malformed.ok && malformed.stderr.contains("malformed S3 target") && malformed.stderr.split(separator: "\n").count == 1, "\(malformed.stderr)")
        let refused = s.run("AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 \"$RFS\" points vm --target \(s.target)")
        #expect(!refused.ok && refused.stderr.contains("credentials refused by") && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(!s.run("grep -q other '\(site.disks)/.replicafs/vms/other.json'").ok, "a refused protect saved the VM")
        site.unmount()
    }
    @Test("protect --s3-endpoint and --credentials-file with no AWS variables anywhere: saved with the VM, the daemon replicates and points, export and a drill work without the flags; a missing credentials file is one line")
    func accessFlagsInsteadOfEnvironment() throws {
        let s = try S3Site("flags")
        defer { s.cleanup() }
        let site = s.site
        let endpoint = try #require(s.env["AWS_ENDPOINT_URL"])
        let creds = site.root + "/credentials"
        let keys = "[default]\naws_access_key_id = \(s.env["AWS_ACCESS_KEY_ID"] ?? "")\naws_secret_access_key = \(s.env["AWS_SECRET_ACCESS_KEY"] ?? "")\n"
        try keys.write(toFile: creds, atomically: true, encoding: .utf8)
        chmod(creds, 0o600)
        // No AWS variable and a home without ~/.aws: only the flags can name the endpoint and keys.
        let bare = "env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_S3 -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_REGION -u AWS_PROFILE HOME='\(site.root)' REPLICAFS_S3_CACHE='\(s.cache)' "
        Shell.must("truncate -s 16M '\(site.disks)/f.img'")
        Shell.must(bare + "\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        let missing = Shell.run(bare + "\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk f.img --target \(s.target) --s3-endpoint \(endpoint) --credentials-file '\(site.root)/nope'")
        #expect(!missing.ok && missing.stderr.contains("credentials file") && missing.stderr.split(separator: "\n").count == 1, "\(missing.stderr)")
        let unnamed = Shell.run(bare + "\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk f.img --target \(s.target)")
        #expect(!unnamed.ok && unnamed.stderr.split(separator: "\n").count == 1, "without the flags protect must fail: \(unnamed.stderr)")
        Shell.must("cd / && " + bare + "\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk f.img --target \(s.target) --s3-endpoint \(endpoint) --credentials-file '\(creds)' --copy-frequency 1h")
        s.waitProtected("vm")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/f.img' bs=1M count=3 seek=5 conv=notrunc,fsync status=none")
        let sum = s.sha(site.mnt + "/f.img")
        struct P: Decodable { var id: Int }
        let p = try JSONDecoder().decode(P.self, from: Data(Shell.must(bare + "\"$RFS\" snapshot vm --wait --json").utf8))
        // The registry knows the VM: points and export open the bucket with the saved flags.
        let listed = try JSONDecoder().decode([P].self, from: Data(Shell.must(bare + "\"$RFS\" points vm --json").utf8)).map(\.id)
        #expect(listed.contains(p.id), "points without flags: \(listed)")
        let out = site.root + "/export.img"
        Shell.must(bare + "\"$RFS\" export vm --point \(p.id) --disk f.img --to '\(out)'")
        #expect(s.sha(out) == sum)
        // A test failover's daemon gets them too.
        let drill = site.root + "/drill"
        Shell.must("mkdir -p '\(drill)'")
        site.extraMounts.append(drill)
        Shell.must(bare + "\"$RFS\" failover vm --test --mount '\(drill)' --work-dir '\(s.work)'")
        #expect(s.sha(drill + "/f.img") == sum)
        Shell.must(bare + "\"$RFS\" failover cleanup vm")
        site.unmount()
    }
}
