import Foundation
import Testing
import ReplicaTestSupport

/// Runs commands through bash for the mount tests: real tools (dd, fio, mkfs.ext4, sha256sum).
struct Shell {
    typealias Result = BashRunner.Result

    /// The replicafs binary built beside the test bundle (or $REPLICAFS_BIN).
    static var replicafs: String { BashRunner.replicafs }

    /// Runs `command` with bash; stdout and stderr go through temporary files and the child is
    /// reaped with waitpid (Foundation's Process can miss a child's exit under load).
    @discardableResult
    static func run(_ command: String, environment: [String: String] = [:]) -> Result {
        var env = ["RFS": replicafs]
        // Tests use copy frequencies such as 1s and 1h, outside the seeds' 30s/5m/15m (a test
        // of the limits passes REPLICAFS_ALLOW_ANY_FREQUENCY=0).
        if ProcessInfo.processInfo.environment["REPLICAFS_ALLOW_ANY_FREQUENCY"] == nil { env["REPLICAFS_ALLOW_ANY_FREQUENCY"] = "1" }
        for (k, v) in environment { env[k] = v }
        return BashRunner.run(command, environment: env)
    }

    /// Runs a command that must succeed; records its output as an issue otherwise.
    @discardableResult
    static func must(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run(command)
        #expect(r.ok, "command failed (\(r.status)): \(command)\nstdout: \(r.stdout)\nstderr: \(r.stderr)",
                sourceLocation: sourceLocation)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `status --json` of `target`, whatever the health: `status` exits with the worst health
    /// (docs/health.md), 1 when a fault the test made cost a cycle, and the JSON is what counts.
    static func statusJSON(_ target: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run("\"$RFS\" status '\(target)' --json")
        #expect(r.status <= 2 && !r.stdout.isEmpty, "status failed (\(r.status)): \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout
    }

    static func sha256(_ path: String) -> String {
        String(must("sha256sum '\(path)'").prefix(64))
    }
}

/// A scratch site for one test: a disks dir, a mountpoint, a base copy, cleaned up in `cleanup()`
/// (called from a `defer`, so a failing test does not leave mounts for the next one).
final class Site {
    let root: String
    var disks: String { root + "/disks" }
    var mnt: String { root + "/mnt" }
    var extraMounts: [String] = []

    init(_ name: String) {
        root = Shell.must("mktemp -d /var/tmp/rfs-test-\(name)-XXXXXX")
        Shell.must("mkdir -p '\(root)/disks' '\(root)/mnt'")
    }

    func mount(_ options: String = "") {
        Shell.must("\"$RFS\" mount '\(disks)' '\(mnt)' \(options)")
    }

    func unmount() {
        Shell.must("\"$RFS\" unmount '\(mnt)'")
    }

    /// This site's mount daemon log (every daemon mounted here appends to it): in the run
    /// directory the daemons use, `${REPLICAFS_RUN_DIR:-/run/replicafs}`, named as
    /// MountRegistry names it (FNV-1a of the mountpoint). Other engineers' daemons log to the
    /// same directory when REPLICAFS_RUN_DIR is not set, so the site's own file is read.
    func daemonLog() -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in mnt.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        let key = String(repeating: "0", count: max(0, 16 - hex.count)) + hex
        return Shell.run("cat \"${REPLICAFS_RUN_DIR:-/run/replicafs}/\(key).log\" 2>/dev/null").stdout
    }

    /// The daemon's pid, from `status --json`.
    func daemonPID() -> Int32? {
        let out = Shell.statusJSON(mnt)
        struct S: Decodable { var pid: Int32 }
        return (try? JSONDecoder().decode([S].self, from: Data(out.utf8)))?.first?.pid
    }

    func logs(of image: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: disks)) ?? [])
            .filter { $0.hasPrefix(image + ".") && $0.hasSuffix(".hrl") }.sorted().map { disks + "/" + $0 }
    }

    /// Applies every log of `image` to a copy of `base` and returns the copy's path.
    func replay(_ image: String, onto base: String) -> String {
        let copy = root + "/replay-" + image
        Shell.must("cp --sparse=always '\(base)' '\(copy)'")
        let logs = logs(of: image).map { "'\($0)'" }.joined(separator: " ")
        Shell.must("\"$RFS\" log apply \(logs) --to '\(copy)'")
        return copy
    }

    func cleanup() {
        for m in extraMounts.reversed() { Shell.run("umount -l '\(m)' 2>/dev/null") }
        // A daemon killed after its mount was detached leaves its record (status lists it as
        // dead, exit 2): unmount drops it.
        Shell.run("grep -q ' \(mnt) ' /proc/mounts || \"$RFS\" unmount '\(mnt)' >/dev/null 2>&1")
        Shell.run("grep -q ' \(mnt) ' /proc/mounts && { \"$RFS\" unmount '\(mnt)' || umount -l '\(mnt)'; }")
        Shell.run("losetup -l -n -O NAME,BACK-FILE | awk -v r='\(root)' 'index($2, r) == 1 {print $1}' | xargs -r -n1 losetup -d")
        Shell.run("rm -rf '\(root)'")
    }
}
