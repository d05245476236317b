import Foundation
import ReplicaSystem
import Testing

/// What an administrator installs and runs (docs/operations.md): `Tools/install.sh` into a
/// scratch prefix, its systemd units checked by `systemd-analyze verify`, a protected mount
/// started by mount(8) through the fstab helper, `failover remount --all` (the boot unit's
/// command), `--version` and the help of `failover`.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct OperabilityTests {
    /// The repository root (Tools/install.sh), found from this file's path.
    static let repo: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// A scratch prefix with ReplicaFS installed by `Tools/install.sh --prefix` (the test
    /// binary, and with it the committed man page docs/man/replicafs.1).
    final class Installed {
        let prefix: String
        var bin: String { prefix + "/bin/replicafs" }
        var units: String { prefix + "/lib/systemd/system" }
        var sbin: String { prefix + "/sbin" }

        init() {
            prefix = Shell.must("mktemp -d /tmp/ops-units-prefix-XXXXXX")
            Shell.must("'\(OperabilityTests.repo)/Tools/install.sh' --prefix '\(prefix)' --bin \"$RFS\"")
        }

        func remove() { Shell.run("rm -rf '\(prefix)'") }
    }

    @Test("install.sh --prefix installs the binary, units, helpers and completions, naming the installed binary")
    func installIntoAPrefix() {
        let installed = Installed()
        defer { installed.remove() }
        #expect(Shell.must("'\(installed.bin)' --version") == ReplicaVersion.current)
        for unit in ["replicafs-mount@.service", "replicafs-failover-remount@.service"] {
            let text = Shell.must("cat '\(installed.units)/\(unit)'")
            #expect(text.contains("ExecStart=\(installed.bin) "), "\(unit) does not run the installed binary")
            #expect(!text.contains("/usr/local/bin"), "\(unit) still names /usr/local/bin")
        }
        for helper in ["mount.fuse.replicafs", "umount.fuse.replicafs"] {
            Shell.must("test -x '\(installed.sbin)/\(helper)' && grep -q 'REPLICAFS_BIN:-\(installed.bin)}' '\(installed.sbin)/\(helper)'")
        }
        #expect(Shell.must("cat '\(installed.prefix)/share/bash-completion/completions/replicafs'").contains("failover"))
        #expect(Shell.must("cat '\(installed.prefix)/share/zsh/site-functions/_replicafs'").contains("#compdef replicafs"))
        #expect(Shell.must("cat '\(installed.prefix)/share/fish/vendor_completions.d/replicafs.fish'").contains("replicafs"))
        // The man page (ManPageTests checks the committed page against the command tree).
        Shell.must("cmp '\(Self.repo)/docs/man/replicafs.1' '\(installed.prefix)/share/man/man1/replicafs.1'")
        // Nothing outside the prefix: a relative prefix or an unknown option is refused.
        let bad = Shell.run("'\(Self.repo)/Tools/install.sh' --prefix relative/dir --bin \"$RFS\" --no-man")
        #expect(!bad.ok && bad.stderr.contains("--prefix must be an absolute path"), "\(bad.stderr)")
        let unknown = Shell.run("'\(Self.repo)/Tools/install.sh' --prefix '\(installed.prefix)' --frobnicate")
        #expect(!unknown.ok && unknown.stderr.contains("unknown argument '--frobnicate'"), "\(unknown.stderr)")
    }

    @Test("systemd-analyze verify passes every installed unit, and catches a unit whose binary is missing")
    func unitsVerify() throws {
        if !Shell.run("command -v systemd-analyze").ok {
            Shell.must("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null")
        }
        let installed = Installed()
        defer { installed.remove() }
        // Templates are verified as instances, the way they run: a disks-dir name, a store path.
        let dir = Shell.must("mktemp -d /tmp/ops-units-verify-XXXXXX")
        defer { Shell.run("rm -rf '\(dir)'") }
        let instances = ["replicafs-mount@.service": "replicafs-mount@vm1.service",
                         "replicafs-failover-remount@.service": "replicafs-failover-remount@srv-store.service"]
        let files = Shell.must("ls '\(installed.units)'").split(separator: "\n").map(String.init)
        #expect(Set(files) == Set(instances.keys), "units installed: \(files)")
        for (template, instance) in instances {
            Shell.must("cp '\(installed.units)/\(template)' '\(dir)/\(instance)'")
            // --man=no: the man page is not installed in the scratch prefix.
            let r = Shell.run("systemd-analyze verify --man=no '\(dir)/\(instance)'")
            #expect(r.ok && r.stderr.isEmpty, "\(instance): exit \(r.status): \(r.stderr)")
        }
        // The check is real: the same unit naming a binary that is not there fails.
        Shell.must("sed 's#\(installed.bin)#\(installed.prefix)/nope/replicafs#' '\(dir)/replicafs-mount@vm1.service' > '\(dir)/broken@vm1.service'")
        let broken = Shell.run("systemd-analyze verify --man=no '\(dir)/broken@vm1.service'")
        #expect(!broken.ok && broken.stderr.contains("is not executable"), "\(broken.stderr)")
    }

    @Test("an fstab-style mount through mount.fuse.replicafs: -o options map to mount flags, a write is logged, unmount seals the logs")
    func fstabMount() throws {
        let installed = Installed()
        defer { installed.remove() }
        let site = Site("ops-fstab")
        defer { site.cleanup() }
        Shell.must("dd if=/dev/urandom of='\(site.disks)/vm.img' bs=1M count=8 status=none && cp '\(site.disks)/vm.img' '\(site.root)/base.img'")

        // mount(8) finds helpers only in /sbin: put ours there unless one is installed
        // (then call ours the way mount(8) would), and take it away again.
        let helper = "/sbin/mount.fuse.replicafs", unhelper = "/sbin/umount.fuse.replicafs"
        let ours = !FileManager.default.fileExists(atPath: helper) && !FileManager.default.fileExists(atPath: unhelper)
        if ours {
            Shell.must("cp '\(installed.sbin)/mount.fuse.replicafs' \(helper) && cp '\(installed.sbin)/umount.fuse.replicafs' \(unhelper)")
        }
        defer { if ours { Shell.run("rm -f \(helper) \(unhelper)") } }
        let mountCommand = ours
            ? "mount -t fuse.replicafs '\(site.disks)' '\(site.mnt)' -o rw,_netdev,nofail,threads=3,writeback_cache=off"
            : "'\(installed.sbin)/mount.fuse.replicafs' '\(site.disks)' '\(site.mnt)' -o rw,_netdev,nofail,threads=3,writeback_cache=off"

        // Bad options are refused with one line and nothing mounted.
        for (option, message) in [("ro", "a replicafs mount is read-write"), ("threads=0", "threads must be 1 or more"),
                                  ("bogus=1", "unknown option 'bogus=1'")] {
            let r = Shell.run("'\(installed.sbin)/mount.fuse.replicafs' '\(site.disks)' '\(site.mnt)' -o \(option)")
            #expect(!r.ok && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(message), "-o \(option): \(r.stderr)")
        }
        #expect(!Shell.run("grep -q ' \(site.mnt) ' /proc/mounts").ok)

        Shell.must(mountCommand)
        let fsType = Shell.must("awk -v m='\(site.mnt)' '$2 == m {print $3}' /proc/mounts")
        #expect(fsType == "fuse.replicafs")
        // writeback_cache=off reached the daemon.
        #expect(Shell.must("\"$RFS\" status '\(site.mnt)' --json").contains("\"writebackCache\" : false"))
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/vm.img' bs=4k count=64 seek=100 conv=notrunc,fsync status=none")
        let written = Shell.sha256(site.mnt + "/vm.img")
        let unmount = Shell.run("\"$RFS\" unmount '\(site.mnt)'")
        #expect(unmount.ok, "\(unmount.stderr)")
        #expect(Shell.sha256(site.disks + "/vm.img") == written)
        // The write went through replicafs: the logs replayed onto the old image give the new one.
        let log = try #require(site.logs(of: "vm.img").last)
        #expect(Shell.must("\"$RFS\" log show '\(log)'").contains("clean-shutdown"))
        #expect(Shell.sha256(site.replay("vm.img", onto: site.root + "/base.img")) == written)

        // umount(8) through umount.fuse.replicafs: the clean unmount, the daemon waited for.
        guard ours else { return }
        Shell.must(mountCommand)
        let pid = try #require(site.daemonPID())
        Shell.must("umount '\(site.mnt)'")
        // Gone or a zombie (nothing here may reap the detached daemon): not running.
        let state = Shell.run("awk '{print $3}' /proc/\(pid)/stat 2>/dev/null").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(state.isEmpty || state == "Z", "the daemon still runs (state \(state)) after umount returned")
        let last = try #require(site.logs(of: "vm.img").last)
        #expect(Shell.must("\"$RFS\" log show '\(last)'").contains("clean-shutdown"))
    }

    @Test("failover remount --all (the boot unit's command) mounts again a failover whose daemon died, and skips a running one")
    func remountAllFailovers() throws {
        let site = Site("ops-remount")
        defer { site.cleanup() }
        let store = site.root + "/store", fm = site.root + "/fo"
        Shell.must("mkdir -p '\(store)' '\(fm)' && dd if=/dev/urandom of='\(site.disks)/a.img' bs=1M count=8 status=none")
        #expect(Shell.must("\"$RFS\" failover remount --all --target '\(store)'") == "no failovers recorded in \(store)")
        site.mount()
        Shell.must("\"$RFS\" protect vm1 --disks-dir '\(site.disks)' --disk a.img --target '\(store)' --copy-frequency 1h")
        Shell.must("for i in $(seq 1 300); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM vm1: protected' && exit 0; sleep 0.1; done; exit 1")
        Shell.must("\"$RFS\" snapshot vm1 --wait")
        site.unmount()
        site.extraMounts.append(fm)
        Shell.must("\"$RFS\" failover vm1 --target '\(store)' --mount '\(fm)'")
        defer { Shell.run("\"$RFS\" failover cleanup vm1 --target '\(store)'") }
        Shell.must("dd if=/dev/urandom of='\(fm)/a.img' bs=4k count=16 seek=50 conv=notrunc,fsync status=none")
        let synced = Shell.sha256(fm + "/a.img")
        let pid = try #require(Int32(Shell.must("\"$RFS\" status '\(fm)' --json | grep -o '\"pid\" : [0-9]*' | head -1 | grep -o '[0-9]*$'")))
        #expect(Shell.must("\"$RFS\" failover remount --all --target '\(store)'").contains("already mounted on \(fm)"))
        Shell.must("kill -9 \(pid)")

        let again = Shell.run("\"$RFS\" failover remount --all --target '\(store)'")
        #expect(again.ok && again.stdout.contains("remounted the unplanned failover of VM vm1"), "\(again.stdout) \(again.stderr)")
        #expect(Shell.sha256(fm + "/a.img") == synced, "a fsynced write was lost")

        // Bad input: neither a VM nor --all, or both.
        let neither = Shell.run("\"$RFS\" failover remount --target '\(store)'")
        #expect(!neither.ok && neither.stderr.contains("give a VM name, or --all"), "\(neither.stderr)")
        let both = Shell.run("\"$RFS\" failover remount vm1 --all --target '\(store)'")
        #expect(!both.ok && both.stderr.contains("not both"), "\(both.stderr)")
    }

    @Test("--version prints the library's version")
    func version() {
        let r = Shell.run("\"$RFS\" --version")
        #expect(r.ok && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == ReplicaVersion.current, "\(r.stdout) \(r.stderr)")
    }

    @Test("failover --help shows the options of a failover, not only the subcommands")
    func failoverHelp() {
        for command in ["failover --help", "help failover"] {
            let r = Shell.run("\"$RFS\" \(command)")
            #expect(r.ok, "\(command): \(r.stderr)")
            // The option lines themselves (`--point <point>`), not the usage in start's abstract.
            for option in ["--point <point>", "--mount <mount>", "--target <target>", "--work-dir <work-dir>", "--planned", "cleanup", "remount"] {
                #expect(r.stdout.contains(option), "`replicafs \(command)` does not mention \(option):\n\(r.stdout)")
            }
        }
    }
}
