import Foundation
import Testing

/// A real non-root user for the hardening tests: created if missing (and then removed by
/// `remove()`, called from a defer), commands run as it through runuser.
struct TestUser {
    let name: String
    private let created: Bool

    init(_ name: String) {
        self.name = name
        if Shell.run("id -u \(name)").ok {
            created = false
        } else {
            Shell.must("useradd --system --no-create-home --user-group --shell /usr/sbin/nologin \(name)")
            created = true
        }
    }

    var uid: String { Shell.must("id -u \(name)") }

    /// Runs `command` with bash as this user.
    @discardableResult
    func run(_ command: String) -> Shell.Result {
        Shell.run("runuser -u \(name) -- bash -c \"$USER_COMMAND\"", environment: ["USER_COMMAND": command])
    }

    func remove() {
        if created { Shell.run("userdel \(name)") }
    }
}

/// Issue 16: a user who can write the disks directory root mounts gets no root command, no
/// root file overwrite and no other file's data; logs and store files are no more readable
/// than their image; one rule for entries that are not images; bad names and times refused
/// before anything changes; `log show` works on a log inside the mount.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SecurityTests {
    /// A site whose disks directory `user` may write (as an operator might share it), reachable by every user.
    func sharedSite(_ name: String, _ user: TestUser) -> Site {
        let site = Site(name)
        Shell.must("chmod 755 '\(site.root)' && chown \(user.name) '\(site.disks)' && chmod 755 '\(site.disks)'")
        Shell.must("truncate -s 4M '\(site.disks)/vm.img'")
        return site
    }

    @Test("1a: a policy planted in .replicafs/vms by a user is refused and its quiesce command never runs as root", .timeLimit(.minutes(2)))
    func plantedPolicyRefused() {
        let user = TestUser("rfs-hsec")
        defer { user.remove() }
        let site = sharedSite("sec-policy", user)
        defer { site.cleanup() }
        let pwned = site.root + "/pwned"
        let policy = """
            {"name":"evil","disks":["vm.img"],"target":"\(site.root)/ustore","policy":{"copyFrequency":1,"retention":3600,\
            "appConsistentEvery":1,"quiesce":"id -u > \(pwned)","thaw":"true"}}
            """
        let planted = user.run("mkdir -p '\(site.root)/ustore' '\(site.disks)/.replicafs/vms' 2>/dev/null; mkdir -p '\(site.disks)/.replicafs/vms' && printf '%s' '\(policy)' > '\(site.disks)/.replicafs/vms/evil.json'")
        #expect(planted.ok, "\(planted.stderr)")
        let r = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(!r.ok, "the mount adopted a state directory a user owns")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("refusing state directory \(site.disks)/.replicafs"), "\(r.stderr)")
        if r.ok { Shell.run("for i in $(seq 1 100); do [ -e '\(pwned)' ] && break; sleep 0.2; done") }
        #expect(!FileManager.default.fileExists(atPath: pwned), "the planted quiesce command ran as root")
        #expect(site.logs(of: "vm.img").isEmpty, "a refused mount created a log")

        // Once root owns the state directory again (and its files), the mount goes on; a
        // policy someone else wrote is still not adopted.
        Shell.must("chown -R root:root '\(site.disks)/.replicafs' && chown \(user.name) '\(site.disks)/.replicafs/vms/evil.json'")
        site.mount()
        Shell.run("sleep 2")
        #expect(!Shell.must("\"$RFS\" status '\(site.mnt)'").contains("VM evil"), "a policy owned by a user was adopted")
        #expect(!FileManager.default.fileExists(atPath: pwned), "the planted quiesce command ran as root")
        site.unmount()
    }

    @Test("1b: symlinks planted at the lock's and a state file's temporary name make root write nothing through them", .timeLimit(.minutes(2)))
    func plantedSymlinksNotFollowed() {
        let user = TestUser("rfs-hsec")
        defer { user.remove() }
        let site = sharedSite("sec-tmp", user)
        defer { site.cleanup() }
        // A root-only file the user wants overwritten, and a path the user wants created as root.
        let victim = site.root + "/victim"
        Shell.must("echo 'root only' > '\(victim)' && chmod 600 '\(victim)'")
        let before = Shell.sha256(victim)
        let created = site.root + "/created-by-root"
        #expect(user.run("ln -s '\(created)' '\(site.disks)/.replicafs.lock'").ok)
        var r = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(!r.ok && r.stderr.contains("refusing \(site.disks)/.replicafs.lock: it is a symlink"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: created), "root created a file through a planted symlink")
        Shell.must("rm '\(site.disks)/.replicafs.lock'")

        // The user's own state directory with a symlink at the fingerprints' temporary name.
        #expect(user.run("mkdir '\(site.disks)/.replicafs' && ln -s '\(victim)' '\(site.disks)/.replicafs/fingerprints.json.tmp'").ok)
        r = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        if r.ok { site.unmount() } // a clean unmount writes the fingerprints
        #expect(!r.ok && r.stderr.contains("refusing state directory"), "\(r.stderr)")
        #expect(Shell.sha256(victim) == before, "root overwrote the symlink's target")
    }

    @Test("1c: an image that is a symlink leaving the disks directory is not served, and says so", .timeLimit(.minutes(2)))
    func symlinkLeavingDisksDirNotServed() {
        let user = TestUser("rfs-hsec")
        defer { user.remove() }
        let site = sharedSite("sec-leave", user)
        defer { site.cleanup() }
        let secret = site.root + "/secret"
        Shell.must("head -c 1M /dev/urandom > '\(secret)' && chmod 600 '\(secret)'")
        #expect(user.run("ln -s '\(secret)' '\(site.disks)/secret.img'").ok)
        let r = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(r.ok, "\(r.stderr)")
        #expect(r.stderr.contains("skipping secret.img: a symlink leaving the disks directory, to \(secret)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: site.mnt + "/secret.img"), "the file outside the disks directory is served")
        #expect(FileManager.default.fileExists(atPath: site.mnt + "/vm.img"))
        #expect(site.logs(of: "secret.img").isEmpty)
        #expect(Shell.must("\"$RFS\" status '\(site.mnt)'").contains("skipped secret.img: a symlink leaving the disks directory"))
        site.unmount()
    }

    @Test("7: logs take their image's owner and mode on disk and in the mount, the root its directory's, store files are 0600", .timeLimit(.minutes(3)))
    func logsAndStoreNotReadableByOthers() {
        let user = TestUser("rfs-hsec")
        defer { user.remove() }
        let site = Site("sec-modes")
        defer { site.cleanup() }
        Shell.must("chmod 755 '\(site.root)' && mkdir -p '\(site.root)/store'")
        Shell.must("dd if=/dev/urandom of='\(site.disks)/vm.img' bs=1M count=4 status=none && chown \(user.name) '\(site.disks)/vm.img' && chmod 600 '\(site.disks)/vm.img'")
        Shell.must("chmod 711 '\(site.disks)'")
        site.mount()
        #expect(Shell.must("stat -c %a '\(site.mnt)'") == "711", "the mount root does not follow the disks directory")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=64k count=4 conv=notrunc,fsync status=none")
        let log = "vm.img.000001.hrl"
        #expect(Shell.must("stat -c '%U %a' '\(site.disks)/\(log)'") == "\(user.name) 600", "log on disk")
        #expect(Shell.must("stat -c '%U %a' '\(site.mnt)/\(log)'") == "\(user.name) 400", "log in the mount")
        // Another user reads neither the image nor its log; the image's owner reads both.
        #expect(!Shell.run("runuser -u nobody -- cat '\(site.mnt)/\(log)' > /dev/null").ok, "another user read the log of a 0600 image")
        #expect(user.run("cat '\(site.mnt)/\(log)' > /dev/null").ok, "the image's owner cannot read its log")

        Shell.must("\"$RFS\" protect v --disks-dir '\(site.disks)' --disk vm.img --target '\(site.root)/store' --copy-frequency 2s")
        Shell.must("for i in $(seq 1 100); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM v: protected' && exit 0; sleep 0.1; done; exit 1")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=64k count=4 seek=8 conv=notrunc,fsync status=none")
        Shell.must("\"$RFS\" snapshot v --wait")
        let files = Shell.must("find '\(site.root)/store' -type f | wc -l")
        #expect((Int(files) ?? 0) >= 3, "store holds \(files) files")
        let open = Shell.must("find '\(site.root)/store' -type f -perm /077")
        #expect(open.isEmpty, "store files readable by others: \(open)")
        site.unmount()
    }

    @Test("13: one rule for entries that are not images, long names refused before any log, log show inside the mount", .timeLimit(.minutes(3)))
    func nonImageEntriesNamesAndLogShow() {
        let site = Site("sec-entries")
        defer { site.cleanup() }
        Shell.must("truncate -s 4M '\(site.disks)/vm.img' && mkdir '\(site.root)/dir'")
        Shell.must("cd '\(site.disks)' && ln -s /nonexistent/x.img gone.img && ln -s sub dir.img && ln -s '\(site.root)/dir' out.img && mkfifo fifo.img && mknod null.img c 1 3 && mkdir sub")
        let r = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(r.ok, "\(r.stderr)")
        for (name, reason) in [("gone.img", "a dangling symlink"), ("dir.img", "a symlink to a directory"), ("fifo.img", "a FIFO"),
                               ("null.img", "a device file"), ("sub", "a directory"),
                               ("out.img", "a symlink leaving the disks directory")] {
            #expect(r.stderr.contains("skipping \(name): \(reason)"), "\(name): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: site.mnt + "/" + name), "\(name) is served")
        }
        let status = Shell.must("\"$RFS\" status '\(site.mnt)'")
        #expect(r.stderr.contains("skipping sub: a directory (only regular files, or symlinks to regular files inside the disks directory, are served)"))
        #expect(status.contains("skipped fifo.img: a FIFO, not served") && status.contains("skipped gone.img: a dangling symlink"), "\(status)")

        // log show of a log inside the mount (no mmap through FUSE).
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=64k count=2 conv=notrunc,fsync status=none")
        let show = Shell.run("\"$RFS\" log show '\(site.mnt)/vm.img.000001.hrl'")
        #expect(show.ok && show.stdout.contains("vm.img"), "\(show.stderr)")
        site.unmount()

        // A 250-byte image name is refused before any log is created; the next mount is clean.
        Shell.must("cd '\(site.disks)' && rm -f gone.img dir.img out.img fifo.img null.img && rmdir sub && rm -f vm.img.*.hrl && truncate -s 1M a.img")
        let long = String(repeating: "n", count: 246) + ".img"
        Shell.must("truncate -s 1M '\(site.disks)/\(long)'")
        let refused = Shell.run("\"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        #expect(!refused.ok && refused.stderr.contains("image name too long (250 bytes"), "\(refused.stderr)")
        #expect(site.logs(of: "a.img").isEmpty && site.logs(of: "vm.img").isEmpty, "a refused mount created logs")
        Shell.must("rm '\(site.disks)/\(long)'")
        site.mount()
        #expect(!Shell.must("\"$RFS\" status '\(site.mnt)'").contains("unclean shutdown"))
        site.unmount()
    }

    @Test("13: 2026-02-30 is refused as a time by protect, plans and failover", .timeLimit(.minutes(2)))
    func impossibleTimeRefusedByCommands() {
        let site = Site("sec-time")
        defer { site.cleanup() }
        Shell.must("truncate -s 4M '\(site.disks)/vm.img' && mkdir -p '\(site.root)/store'")
        var r = Shell.run("\"$RFS\" protect v --disks-dir '\(site.disks)' --disk vm.img --target '\(site.root)/store' --initial 2026-02-30T10:00:00Z")
        #expect(!r.ok && r.stderr.contains("bad --initial time '2026-02-30T10:00:00Z'"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: site.disks + "/.replicafs/vms/v.json"))
        Shell.must("printf 'name: p\\ntarget: \(site.root)/store\\nmountRoot: \(site.root)/fo\\npoint: 2026-02-30T10:00:00Z\\ngroups:\\n  - name: g\\n    vms: [{name: v}]\\n' > '\(site.root)/plan.yaml'")
        r = Shell.run("\"$RFS\" plan failover '\(site.root)/plan.yaml'")
        #expect(!r.ok && r.stderr.contains("2026-02-30T10:00:00Z"), "\(r.stderr)")
        // A store holding the VM, so failover gets as far as parsing the point.
        site.mount()
        Shell.must("\"$RFS\" protect v --disks-dir '\(site.disks)' --disk vm.img --target '\(site.root)/store'")
        Shell.must("for i in $(seq 1 100); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM v: protected' && exit 0; sleep 0.1; done; exit 1")
        Shell.must("\"$RFS\" snapshot v --wait")
        Shell.must("mkdir -p '\(site.root)/fo'")
        r = Shell.run("\"$RFS\" failover v --target '\(site.root)/store' --point 2026-02-30T10:00:00Z --mount '\(site.root)/fo' --test")
        #expect(!r.ok && r.stderr.contains("bad point time '2026-02-30T10:00:00Z'"), "\(r.stderr)")
        site.unmount()
    }
}
