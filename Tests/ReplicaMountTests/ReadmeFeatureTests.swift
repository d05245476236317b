import Foundation
import Testing

/// README features that had no test of their own: `status`'s exit status follows the worst of
/// several VMs, and `unprotect` keeps the replica unless `--delete-replica` is given.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReadmeFeatureTests {
    struct Mount: Decodable { var vms: [VM] }
    struct VM: Decodable { var vm: String; var health: String; var lastPoint: Int? }

    func vms(_ site: Site) -> [String: VM] {
        let out = Shell.run("\"$RFS\" status '\(site.mnt)' --json").stdout
        let mounts = (try? JSONDecoder().decode([Mount].self, from: Data(out.utf8))) ?? []
        return Dictionary(mounts.flatMap(\.vms).map { ($0.vm, $0) }, uniquingKeysWith: { a, _ in a })
    }

    func waitFor(_ site: Site, seconds: Double, _ done: ([String: VM]) -> Bool) -> [String: VM] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let now = vms(site)
            if done(now) { return now }
            usleep(100_000)
        }
        return vms(site)
    }

    @Test("status exits with the worst VM's health (0 normal, 2 critical); unprotect keeps the replica, --delete-replica removes it")
    func worstVMAndDeleteReplica() throws {
        let site = Site("readme")
        defer { site.cleanup() }
        let good = site.root + "/store-good", bad = site.root + "/store-bad"
        Shell.must("mkdir -p '\(good)' '\(bad)' && truncate -s 8M '\(site.disks)/a.img' && truncate -s 8M '\(site.disks)/b.img'")
        Shell.must("REPLICAFS_TIME_SCALE=0.01 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        Shell.must("\"$RFS\" protect fine --disks-dir '\(site.disks)' --disk a.img --target '\(good)' --copy-frequency 1s")
        Shell.must("\"$RFS\" protect sick --disks-dir '\(site.disks)' --disk b.img --target '\(bad)' --copy-frequency 1s")
        var s = waitFor(site, seconds: 30) { $0["fine"]?.lastPoint != nil && $0["sick"]?.lastPoint != nil }
        #expect(s["fine"]?.health == "normal" && s["sick"]?.health == "normal", "\(s)")
        #expect(Shell.run("\"$RFS\" status '\(site.mnt)'").status == 0)

        // One VM's store refuses writes (a read-only bind mount; root ignores modes): that VM
        // goes Critical, the other stays normal, and status exits 2 for the pair.
        Shell.must("mount --bind '\(bad)' '\(bad)' && mount -o remount,bind,ro '\(bad)'")
        site.extraMounts.append(bad)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/b.img' bs=64k count=4 conv=notrunc,fsync status=none")
        s = waitFor(site, seconds: 20) { $0["sick"]?.health == "critical" }
        #expect(s["sick"]?.health == "critical" && s["fine"]?.health == "normal", "\(s)")
        let worst = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(worst.status == 2, "status exit \(worst.status) with one VM critical: \(worst.stdout)")
        #expect(worst.stdout.contains("VM fine") && worst.stdout.contains("VM sick"), "\(worst.stdout)")
        Shell.must("umount '\(bad)'")
        site.extraMounts.removeAll()

        // unprotect --delete-replica: the VM leaves the mount, its replica leaves the store, and
        // the exit status is the remaining VM's again.
        let before = Shell.run("\"$RFS\" points sick --target '\(bad)' --json")
        #expect(before.ok, "the replica is there before: \(before.stderr)")
        Shell.must("\"$RFS\" unprotect sick --disks-dir '\(site.disks)' --delete-replica")
        let gone = Shell.run("\"$RFS\" points sick --target '\(bad)'")
        #expect(!gone.ok && gone.stderr.contains("unknown VM sick"), "\(gone.stdout) \(gone.stderr)")
        #expect(!FileManager.default.fileExists(atPath: bad + "/sick"), "the replica's directory is left")
        s = waitFor(site, seconds: 10) { $0["sick"] == nil }
        #expect(s["sick"] == nil && s["fine"] != nil, "\(s)")
        #expect(Shell.run("\"$RFS\" status '\(site.mnt)'").status == 0)

        // unprotect without it keeps the replica and its points.
        Shell.must("\"$RFS\" unprotect fine --disks-dir '\(site.disks)'")
        #expect(Shell.run("\"$RFS\" points fine --target '\(good)'").ok)
        #expect(Shell.must("\"$RFS\" export fine --target '\(good)' --point latest --disk a.img --to '\(site.root)/a.out' >/dev/null && echo ok") == "ok")
        site.unmount()
    }
}
