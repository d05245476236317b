import Foundation
import Testing

/// One way to name a VM (the local registry), named policies that change a protected VM
/// without touching its replica, and failback without dead ends, on real mounts
/// (docs/operations.md).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NamingAndPolicyTests {
    /// The seeds' limits apply (the other tests lift them for 1s and 1h frequencies).
    static let strict = ["REPLICAFS_ALLOW_ANY_FREQUENCY": "0"]

    func waitFor(_ condition: String, seconds: Int = 30, sourceLocation: SourceLocation = #_sourceLocation) {
        Shell.must("for i in $(seq 1 \(seconds * 10)); do \(condition) && exit 0; sleep 0.1; done; exit 1", sourceLocation: sourceLocation)
    }

    /// A refused command: exit status not 0, one line on stderr containing every one of `words`.
    @discardableResult
    func refused(_ args: String, _ words: [String], env: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = Shell.run("\"$RFS\" \(args)", environment: env)
        let lines = r.stderr.split(separator: "\n")
        #expect(!r.ok && lines.count == 1 && words.allSatisfy { r.stderr.contains($0) },
                "\(args): exit \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
        return r.stderr
    }

    /// The site's disks dir with one random image, mounted and protected as `vm` with `extra`.
    func protectedSite(_ name: String, vm: String, disk: String = "a.img", mib: Int = 4, extra: String) -> Site {
        let site = Site(name)
        Shell.must("mkdir -p '\(site.root)/store' && dd if=/dev/urandom of='\(site.disks)/\(disk)' bs=1M count=\(mib) status=none")
        site.mount()
        Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk \(disk) --target '\(site.root)/store' \(extra)")
        waitFor("\"$RFS\" status \(vm) | grep -q 'VM \(vm): protected'")
        return site
    }

    struct Row: Decodable {
        var vm: String
        var disksDir: String?
        var target: String
        var policyName: String?
        var copyFrequency: String?
        var compress: Bool?
        var failover: String?
    }

    func vms(_ args: String = "") throws -> [Row] {
        try JSONDecoder().decode([Row].self, from: Data(Shell.must("\"$RFS\" vms --json \(args)").utf8))
    }

    @Test("a VM is named alone: vms, status, points, snapshot and failover cleanup/remount find it from the local registry; an unregistered name is one line naming the command")
    func oneName() throws {
        let vm = "nm\(getpid())"
        let site = protectedSite("naming", vm: vm, extra: "--copy-frequency 5m")
        defer { site.cleanup() }
        let store = site.root + "/store", real = Shell.must("realpath '\(site.disks)'")
        let mine = try #require(try vms().first { $0.vm == vm })
        #expect(mine.disksDir == real && mine.target == Shell.must("realpath '\(store)'") && mine.copyFrequency == "5m")
        #expect(try vms("--target '\(store)'").map(\.vm) == [vm])
        // status <vm> shows this VM and its images, not the other mounts.
        let status = Shell.must("\"$RFS\" status \(vm)")
        #expect(status.contains("VM \(vm): protected") && status.contains("a.img"), "\(status)")
        Shell.must("\"$RFS\" snapshot \(vm)")
        #expect(!Shell.must("\"$RFS\" points \(vm)").isEmpty)
        // A failover started here: cleanup and remount need no --target.
        let fm = site.root + "/fo"
        Shell.must("mkdir -p '\(fm)'")
        site.extraMounts.append(fm)
        Shell.must("\"$RFS\" failover \(vm) --target '\(store)' --test --mount '\(fm)'")
        #expect(try vms().first { $0.vm == vm }?.failover?.contains("test failover") == true)
        Shell.must("\"$RFS\" unmount '\(fm)'")
        Shell.must("\"$RFS\" failover remount \(vm)")
        #expect(Shell.must("\"$RFS\" status \(vm)").contains("test failover"))
        Shell.must("\"$RFS\" failover cleanup \(vm)")
        #expect(!Shell.run("grep -q ' \(fm) ' /proc/mounts").ok)
        // Not registered: one line, the VM and the command to run, nothing done.
        for args in ["status ghost", "points ghost", "export ghost --point latest --disk a.img --to /tmp/x", "failover cleanup ghost",
                     "failover commit ghost", "failover remount ghost", "failback ghost --mode full-download", "snapshot ghost",
                     "resume ghost", "unprotect ghost", "protect ghost --update --copy-frequency 5m", "policy apply gold ghost"] {
            if args.hasPrefix("policy") { Shell.must("\"$RFS\" policy create gold --replace") }
            refused(args, ["unknown VM ghost", "replicafs protect ghost"])
        }
        Shell.must("\"$RFS\" policy delete gold")
        // unprotect <vm> finds its disks directory; the registry forgets it.
        Shell.must("\"$RFS\" unprotect \(vm)")
        #expect(try vms().first { $0.vm == vm } == nil)
    }

    @Test("named policies: create, show, list, protect --policy, protect --update and policy apply change the VM (the daemon follows) and keep its points; every refused value changes nothing")
    func policies() throws {
        let vm = "pol\(getpid())", name = "gold\(getpid())"
        let created = Shell.run("\"$RFS\" policy create \(name) --copy-frequency 15m --retention 2h --app-consistent-every 1h --compress --max-bandwidth 08:00-18:00=10MB/s,*=unlimited --quiesce true --thaw true", environment: Self.strict)
        #expect(created.ok, "\(created.stderr)")
        defer { Shell.run("\"$RFS\" policy delete \(name)") }
        struct Policy: Decodable { var copyFrequency: String; var retention: String; var appConsistentEvery: String?; var compress: Bool; var vms: [String] }
        let shown = try JSONDecoder().decode(Policy.self, from: Data(Shell.must("\"$RFS\" policy show \(name) --json").utf8))
        #expect(shown.copyFrequency == "15m" && shown.retention == "2h" && shown.appConsistentEvery == "1h" && shown.compress)
        #expect(Shell.must("\"$RFS\" policy list").contains(name))
        // Every value the seeds refuse, and a malformed bandwidth: one line, no policy written.
        let bad = ["--copy-frequency 1m", "--copy-frequency 10s", "--copy-frequency 1h", "--app-consistent-every 30m",
                   "--app-consistent-every 13h", "--copy-frequency 15m --retention 10m", "--retention 0",
                   "--max-bandwidth 20MB", "--max-bandwidth 25:00-01:00=1MB/s", "--max-bandwidth=-5MB/s", "--copy-frequency fast"]
        for option in bad {
            refused("policy create bad\(getpid()) \(option)", ["bad "], env: Self.strict)
            #expect(!Shell.run("\"$RFS\" policy show bad\(getpid())").ok, "\(option) created a policy")
        }
        refused("policy show nope", ["unknown policy nope", "replicafs policy list"])
        refused("policy delete nope", ["unknown policy nope"])

        let site = protectedSite("policy", vm: vm, extra: "--policy \(name)")
        defer { site.cleanup() }
        refused("protect other --disks-dir '\(site.disks)' --disk a.img --target '\(site.root)/store' --policy nope", ["unknown policy nope"])
        let file = "\(site.disks)/.replicafs/vms/\(vm).json"
        #expect(Shell.must("grep -c '\"copyFrequency\" : 900' '\(file)'") == "1")
        #expect(try vms().first { $0.vm == vm }?.policyName == name)
        Shell.must("\"$RFS\" snapshot \(vm)")
        struct Point: Decodable, Equatable { var id: Int; var time: String }
        func points() throws -> [Point] { try JSONDecoder().decode([Point].self, from: Data(Shell.must("\"$RFS\" points \(vm) --json").utf8)) }
        let earlier = try points()
        let before = Shell.sha256(file)
        // A refused update changes neither the VM's file nor its points.
        for option in bad + ["--policy nope"] {
            refused("protect \(vm) --update \(option)", [option == "--policy nope" ? "unknown policy" : "bad "], env: Self.strict)
            #expect(Shell.sha256(file) == before, "\(option) changed the policy file")
        }
        refused("protect \(vm) --update", ["give --policy NAME or a setting"])
        refused("protect \(vm) --update --disk a.img --copy-frequency 5m", ["--update changes the policy only"])
        #expect(try points() == earlier)
        #expect(!Shell.run("\"$RFS\" policy delete \(name)").ok, "a policy a VM follows was deleted")
        // Continuous with compression off: the running daemon ships a write without a snapshot.
        let update = Shell.run("\"$RFS\" protect \(vm) --update --copy-frequency continuous --no-compress", environment: Self.strict)
        #expect(update.ok && update.stdout.contains("copy frequency 15m -> continuous"), "\(update.stdout)\(update.stderr)")
        #expect(Shell.must("grep -c '\"compress\" : false' '\(file)'") == "1")
        #expect(try vms().first { $0.vm == vm }?.policyName == nil, "the VM no longer follows \(name)")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/a.img' bs=4k count=1 seek=3 conv=notrunc,fsync status=none")
        waitFor("[ $(\"$RFS\" points \(vm) | wc -l) -gt \(earlier.count) ]", seconds: 20)
        let now = try points()
        #expect(Array(now.prefix(earlier.count)) == earlier, "earlier points changed: \(earlier) -> \(now)")
        // policy apply: back to the named policy's settings.
        let applied = Shell.run("\"$RFS\" policy apply \(name) \(vm)", environment: Self.strict)
        #expect(applied.ok && applied.stdout.contains("continuous -> 15m"), "\(applied.stdout)\(applied.stderr)")
        #expect(try vms().first { $0.vm == vm }?.policyName == name)
        #expect(try vms("--target '\(site.root)/store'").first?.copyFrequency == "15m", "the store's metadata kept the old policy")
        Shell.must("\"$RFS\" unprotect \(vm)")
        Shell.must("\"$RFS\" policy delete \(name)")
    }

    @Test("failback refuses while a failed-over disk is held by a loop mount or a process, before freezing; the filesystem stays clean; once released failback succeeds", .timeLimit(.minutes(4)))
    func failbackRefusesADiskInUse() throws {
        let vm = "fb\(getpid())"
        let site = Site("fbinuse")
        defer { site.cleanup() }
        let fm = site.root + "/fo", fs = site.root + "/fs", home = site.root + "/home"
        Shell.must("mkdir -p '\(site.root)/store' '\(fs)' '\(fm)' && truncate -s 32M '\(site.disks)/fs.img' && mkfs.ext4 -q -F '\(site.disks)/fs.img'")
        site.mount()
        Shell.must("\"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk fs.img --target '\(site.root)/store' --copy-frequency 1h")
        waitFor("\"$RFS\" status \(vm) | grep -q 'VM \(vm): protected'")
        Shell.must("\"$RFS\" snapshot \(vm)")
        site.unmount()
        site.extraMounts.append(fm)
        Shell.must("\"$RFS\" failover \(vm) --target '\(site.root)/store' --mount '\(fm)'")
        // The VM (here: a filesystem on a loop device) runs on the failed-over disk.
        Shell.must("mount -o loop '\(fm)/fs.img' '\(fs)' && echo before > '\(fs)/f' && sync")
        site.extraMounts.append(fs)
        let err = refused("failback \(vm) --mode full-download --disks-dir '\(home)'", ["refused before stopping its writes", "loop device", "umount \(fs)", "replicafs failback \(vm)"])
        struct Status: Decodable { var frozen: Bool?; var vm: String? }
        let st = try JSONDecoder().decode([Status].self, from: Data(Shell.must("\"$RFS\" status '\(fm)' --json").utf8))
        #expect(st.first?.frozen == false, "frozen after the refusal: \(err)")
        // Still writable, and clean once unmounted.
        Shell.must("echo after > '\(fs)/g' && sync && umount '\(fs)' && e2fsck -fn '\(fm)/fs.img'")
        // A process holding the disk open is refused the same way.
        // (SIGKILL: the test process's blocked signals are inherited by what it spawns.)
        Shell.must("sleep 30 3<'\(fm)/fs.img' >/dev/null 2>&1 & echo $! > '\(site.root)/holder'")
        defer { Shell.run("kill -9 $(cat '\(site.root)/holder') 2>/dev/null") }
        refused("failback \(vm) --mode full-download --disks-dir '\(home)'", ["is open in process", "(sleep)"])
        Shell.must("kill -9 $(cat '\(site.root)/holder'); sleep 0.2")
        let sha = Shell.sha256(fm + "/fs.img")
        Shell.must("\"$RFS\" failback \(vm) --mode full-download --disks-dir '\(home)'")
        #expect(Shell.sha256(home + "/fs.img") == sha)
        Shell.must("e2fsck -fn '\(home)/fs.img' && mount -o loop,ro '\(home)/fs.img' '\(fs)' && grep -q after '\(fs)/g' && umount '\(fs)'")
    }

    @Test("the primary back after an unplanned failover: status says failed over and what to run; reverse replication shows in status and jobs with lag, health and retries")
    func failedOverStatusAndReverse() throws {
        let vm = "rv\(getpid())"
        let site = protectedSite("reverse", vm: vm, extra: "--copy-frequency 1h")
        defer { site.cleanup() }
        let store = site.root + "/store", fm = site.root + "/fo"
        Shell.must("\"$RFS\" snapshot \(vm)")
        site.unmount()
        Shell.must("mkdir -p '\(fm)'")
        site.extraMounts.append(fm)
        // The failover daemon runs its retry schedule in seconds.
        let fo = Shell.run("\"$RFS\" failover \(vm) --target '\(store)' --mount '\(fm)'", environment: ["REPLICAFS_TIME_SCALE": "0.01"])
        #expect(fo.ok, "\(fo.stderr)")
        // The primary comes back.
        site.mount()
        waitFor("\"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): failed over'")
        let back = Shell.run("\"$RFS\" status '\(site.mnt)'")
        #expect(back.status == 1 && !back.stdout.contains("initial replication") && back.stdout.contains("replicafs reprotect \(vm)")
                && back.stdout.contains("`replicafs unmount \(site.mnt)`"), "\(back.stdout)")
        // What it says to run: unmount, reprotect towards this disks directory.
        site.unmount()
        Shell.must("\"$RFS\" reprotect \(vm) --disks-dir '\(site.disks)' --copy-frequency 1s")
        Shell.must("dd if=/dev/urandom of='\(fm)/a.img' bs=4k count=2 seek=5 conv=notrunc,fsync status=none")
        waitFor("\"$RFS\" status \(vm) | grep -q 'last shipment'")
        let status = Shell.must("\"$RFS\" status \(vm)")
        #expect(status.contains("reverse replication -> ") && status.contains("lag ") && status.contains("health: normal"), "\(status)")
        struct Reverse: Decodable { var direction: String; var pendingBytes: Int64; var shipments: Int }
        struct Mount: Decodable { var reverse: Reverse? }
        let reverse = try #require(try JSONDecoder().decode([Mount].self, from: Data(Shell.must("\"$RFS\" status \(vm) --json").utf8)).compactMap(\.reverse).first)
        #expect(reverse.direction == "reverse" && reverse.shipments >= 1 && reverse.pendingBytes < 64 << 10, "\(reverse)")
        struct Job: Decodable { var job: String; var direction: String?; var health: String?; var retryAttempt: Int?; var lastShipment: String?; var lagSeconds: Double? }
        func reverseJob() throws -> Job? {
            try JSONDecoder().decode([Job].self, from: Data(Shell.must("\"$RFS\" jobs --json").utf8)).first { $0.job == "reverse replication" }
        }
        let job = try #require(try reverseJob())
        #expect(job.direction == "reverse" && job.health == "normal" && job.retryAttempt == 0 && job.lastShipment != nil && job.lagSeconds != nil)
        // The original site refuses writes: shipments fail, are retried, and the health says so.
        Shell.must("chattr +i '\(site.disks)/a.img'")
        defer { Shell.run("chattr -i '\(site.disks)/a.img'") }
        Shell.must("dd if=/dev/urandom of='\(fm)/a.img' bs=4k count=1 seek=9 conv=notrunc,fsync status=none")
        waitFor("\"$RFS\" jobs --json | grep -q '\"retryAttempt\" : [1-9]'")
        let failing = try #require(try reverseJob())
        #expect(failing.health == "warning", "\(failing)")
        #expect(Shell.run("\"$RFS\" status \(vm)").stdout.contains("LAST ERROR"))
        Shell.must("chattr -i '\(site.disks)/a.img'")
        waitFor("\"$RFS\" jobs --json | grep -q '\"retryAttempt\" : 0'", seconds: 20)
        Shell.must("\"$RFS\" failback \(vm) --mode minimize-downtime")
        #expect(Shell.sha256(site.disks + "/a.img") == Shell.must("\"$RFS\" export \(vm) --point latest --disk a.img --to '\(site.root)/x.img' >/dev/null && sha256sum '\(site.root)/x.img' | cut -c1-64"))
    }
}
