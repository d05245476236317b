import Foundation
import Testing

/// What an administrator watches a protected mount with (docs/operations.md, docs/json.md):
/// the event history (`replicafs events`), the Prometheus endpoint (`mount --metrics`), the
/// `--json` results of the commands, and the progress of long copies (a bar in a terminal,
/// checked in a real one with tmux; plain lines otherwise). Small disks, 1-hour copy
/// frequency: every point is cut by hand, so what is counted is known.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ObservabilityTests {
    /// ISO-8601 UTC with milliseconds, the one time form of the JSON output.
    static func isTime(_ text: String?) -> Bool {
        guard let text else { return false }
        return text.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/#) != nil
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(text.utf8)) } catch {
            Issue.record("cannot decode \(T.self) from: \(text)", sourceLocation: sourceLocation)
            throw error
        }
    }

    /// A TCP port on 127.0.0.1 that nothing listens on now.
    static func freePort() -> Int {
        Int(Shell.must("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"))!
    }

    struct Event: Decodable { var time: String; var vm: String; var kind: String; var level: String; var message: String; var point: Int? }

    @Test("events: initial copy, commits, a failover drill, Critical and resume are recorded and read back by VM and time; --json results of mount, protect, export, failover cleanup, resume, unprotect, unmount")
    func eventsAndJSONResults() throws {
        let site = Site("obs-events")
        defer { site.cleanup() }
        let store = site.root + "/store", drill = site.root + "/drill"
        // Failovers of VMs whose disks are not on this host are recorded here.
        let env = "REPLICAFS_EVENT_DIR='\(site.root)/host-events'"
        Shell.must("mkdir -p '\(store)' '\(drill)' && dd if=/dev/urandom of='\(site.disks)/d.img' bs=1M count=4 status=none")
        defer { Shell.run("\(env) \"$RFS\" failover cleanup ev --target '\(store)'") }

        struct Mounted: Decodable { var disksDir: String; var mountpoint: String; var pid: Int32 }
        let mounted = try Self.decode(Mounted.self, Shell.must("\"$RFS\" mount '\(site.disks)' '\(site.mnt)' --json"))
        #expect(mounted.mountpoint == site.mnt && mounted.pid > 0)
        struct Protected: Decodable { var vm: String; var disks: [String]; var copyFrequencySeconds: Double; var initialAt: String? }
        let protected = try Self.decode(Protected.self, Shell.must(
            "\"$RFS\" protect ev --disks-dir '\(site.disks)' --disk d.img --target '\(store)' --copy-frequency 1h --wait --json"))
        #expect(protected.vm == "ev" && protected.disks == ["d.img"] && protected.copyFrequencySeconds == 3600 && protected.initialAt == nil)
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/d.img' bs=4k count=16 seek=10 conv=notrunc,fsync status=none")
        Shell.must("\"$RFS\" snapshot ev")
        let sum = Shell.sha256(site.mnt + "/d.img")

        struct Exported: Decodable { var vm: String; var disk: String; var point: Int; var time: String; var to: String; var sizeBytes: Int64 }
        let exported = try Self.decode(Exported.self, Shell.must(
            "\"$RFS\" export ev --target '\(store)' --point latest --disk d.img --to '\(site.root)/x.img' --json 2>/dev/null"))
        #expect(exported.sizeBytes == 4 << 20 && exported.point == 2 && Self.isTime(exported.time), "\(exported)")
        #expect(Shell.sha256(site.root + "/x.img") == sum)

        // status --json: one field names the kind of entry; times in the one form.
        let status = Shell.must("\"$RFS\" status '\(site.mnt)' --json")
        struct StatusEntry: Decodable { var entry: String; var vms: [VM]?; struct VM: Decodable { var lastPointTime: String? } }
        let entries = try Self.decode([StatusEntry].self, status)
        #expect(entries.map(\.entry) == ["protected-mount"], "\(status)")
        #expect(Self.isTime(entries.first?.vms?.first?.lastPointTime), "\(status)")

        // A drill and its cleanup (recorded in the host's event directory: no disks dir given).
        Shell.must("\(env) \"$RFS\" failover ev --target '\(store)' --point latest --mount '\(drill)' --test")
        struct Cleaned: Decodable { var vm: String; var action: String; var kind: String; var point: Int; var time: String }
        let cleaned = try Self.decode(Cleaned.self, Shell.must("\(env) \"$RFS\" failover cleanup ev --target '\(store)' --json"))
        #expect(cleaned.action == "cleanup" && cleaned.kind == "test" && cleaned.point == 2 && Self.isTime(cleaned.time))

        // The replica vanishes: the next snapshot fails, the VM goes Critical, then resume.
        Shell.must("rm -rf '\(store)/ev'")
        #expect(!Shell.run("\"$RFS\" snapshot ev").ok)
        var events: [Event] = []
        for _ in 0..<50 {
            events = try Self.decode([Event].self, Shell.must("\(env) \"$RFS\" events ev --json"))
            if events.contains(where: { $0.kind == "health" && $0.level == "critical" }) { break }
            usleep(100_000)
        }
        struct Resumed: Decodable { var vm: String; var resumed: Bool }
        #expect(try Self.decode(Resumed.self, Shell.must("\"$RFS\" resume ev --json")).resumed)
        events = try Self.decode([Event].self, Shell.must("\(env) \"$RFS\" events ev --json"))
        let kinds = events.map(\.kind)
        for kind in ["initial-copy", "commit", "failover", "error", "health", "resume"] {
            #expect(kinds.contains(kind), "no \(kind) event in \(kinds)")
        }
        #expect(events.contains { $0.kind == "commit" && $0.point == 2 })
        #expect(events.contains { $0.kind == "failover" && $0.message.contains("cleaned up") })
        #expect(events.contains { $0.kind == "error" && $0.level == "critical" && $0.message.contains("not found in target store") })
        #expect(events.allSatisfy { $0.vm == "ev" && Self.isTime($0.time) })
        #expect(events.map(\.time) == events.map(\.time).sorted())
        // Persistent: the history is a file beside the VM's policy.
        #expect(FileManager.default.fileExists(atPath: site.disks + "/.replicafs/events/ev.jsonl"))

        // --since: a duration ago, an ISO time; garbage is refused with one line.
        #expect(Shell.must("\(env) \"$RFS\" events ev --since 10m").contains("commit"))
        #expect(Shell.must("\(env) \"$RFS\" events --since 2099-01-01T00:00:00Z") == "no events since 2099-01-01T00:00:00Z")
        let garbage = Shell.run("\(env) \"$RFS\" events ev --since garbage")
        #expect(garbage.status == 1 && garbage.stderr.split(separator: "\n").count == 1 && garbage.stderr.contains("bad --since 'garbage'"), "\(garbage.stderr)")
        let unknown = Shell.run("\(env) \"$RFS\" events nosuchvm")
        #expect(unknown.status == 1 && unknown.stderr.contains("no events recorded for VM nosuchvm"), "\(unknown.stderr)")

        struct Unprotected: Decodable { var vm: String; var replicaDeleted: Bool }
        #expect(try Self.decode(Unprotected.self, Shell.must("\"$RFS\" unprotect ev --disks-dir '\(site.disks)' --json")).replicaDeleted == false)
        struct Unmounted: Decodable { var mountpoint: String; var daemonWasRunning: Bool }
        let unmounted = try Self.decode(Unmounted.self, Shell.must("\"$RFS\" unmount '\(site.mnt)' --json"))
        #expect(unmounted.mountpoint == site.mnt && unmounted.daemonWasRunning)
    }

    @Test("mount --metrics serves per-VM lag, pending bytes, points, last commit, health, retries and bytes shipped; an address in use stops the mount")
    func prometheusEndpoint() throws {
        let site = Site("obs-metrics"), other = Site("obs-metrics2")
        defer { site.cleanup(); other.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && dd if=/dev/urandom of='\(site.disks)/m.img' bs=1M count=4 status=none && truncate -s 1M '\(other.disks)/o.img'")
        let port = Self.freePort(), address = "127.0.0.1:\(port)"
        let started = Date().timeIntervalSince1970
        #expect(Shell.must("\"$RFS\" mount '\(site.disks)' '\(site.mnt)' --metrics \(address)").contains("metrics on http://\(address)/metrics"))
        Shell.must("\"$RFS\" protect mv --disks-dir '\(site.disks)' --disk m.img --target '\(store)' --copy-frequency 1h --wait")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/m.img' bs=64k count=4 conv=notrunc,fsync status=none")
        Shell.must("\"$RFS\" snapshot mv")
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/m.img' bs=4k count=3 seek=100 conv=notrunc,fsync status=none")

        let text = Shell.must("curl -sSf http://\(address)/metrics")
        func value(_ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix("\(name){vm=\"mv\"} ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect(value("replicafs_vm_points") == 2, "\(text)")
        #expect(value("replicafs_vm_health") == 0)
        #expect(value("replicafs_vm_retry_attempts") == 0)
        // The snapshot shipped the 256 KiB written before it (with record headers); 12 KiB wait.
        #expect((value("replicafs_vm_shipped_bytes_total") ?? 0) >= Double(256 << 10), "\(text)")
        #expect((value("replicafs_vm_sent_bytes_total") ?? 0) > 0)
        #expect((value("replicafs_vm_pending_bytes") ?? 0) >= Double(12 << 10), "\(text)")
        let lastCommit = value("replicafs_vm_last_commit_timestamp_seconds") ?? 0
        #expect(lastCommit >= started - 1 && lastCommit <= Date().timeIntervalSince1970 + 1, "\(lastCommit)")
        #expect((value("replicafs_vm_lag_seconds") ?? -1) >= 0)
        #expect(text.contains("# TYPE replicafs_vm_shipped_bytes_total counter"))
        #expect(Shell.run("curl -s -o /dev/null -w '%{http_code}' http://\(address)/nope").stdout == "404")

        // The address is taken: the second mount fails with one line, and nothing is mounted.
        let taken = Shell.run("\"$RFS\" mount '\(other.disks)' '\(other.mnt)' --metrics \(address)")
        #expect(taken.status != 0 && taken.stderr.contains("cannot serve metrics on \(address): the address is already in use")
                && taken.stderr.split(separator: "\n").count == 1, "exit \(taken.status): \(taken.stderr)")
        #expect(!Shell.run("grep -q ' \(other.mnt) ' /proc/mounts").ok, "mounted despite the refused metrics address")
        let bad = Shell.run("\"$RFS\" mount '\(other.disks)' '\(other.mnt)' --metrics nonsense")
        #expect(bad.status != 0 && bad.stderr.contains("bad --metrics address 'nonsense'"), "\(bad.stderr)")
        // The first mount still serves.
        #expect(Shell.run("curl -sf http://\(address)/metrics").ok)
        site.unmount()
        #expect(!Shell.run("curl -sf http://\(address)/metrics").ok, "metrics still served after unmount")
    }

    @Test("progress: plain lines when standard error is not a terminal (initial copy, export), a bar in a real terminal (tmux)")
    func progressLinesAndBar() throws {
        let site = Site("obs-progress")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && dd if=/dev/urandom of='\(site.disks)/p.img' bs=1M count=8 status=none")
        // 4 MB/s: the initial copy takes about 2 s, long enough to be seen going.
        Shell.must("REPLICAFS_INITIAL_COPY_RATE=4000000 \"$RFS\" mount '\(site.disks)' '\(site.mnt)'")
        let wait = Shell.run("\"$RFS\" protect pv --disks-dir '\(site.disks)' --disk p.img --target '\(store)' --copy-frequency 1h --wait")
        #expect(wait.ok, "\(wait.stderr)")
        let lines = wait.stderr.split(separator: "\n").filter { $0.hasPrefix("initial copy of pv: ") }
        #expect(lines.last == "initial copy of pv: 100% (8388608 of 8388608 bytes)", "\(wait.stderr)")
        #expect(lines.count >= 2 && !wait.stderr.contains("\r"), "\(wait.stderr)")
        let export = Shell.run("\"$RFS\" export pv --target '\(store)' --point latest --disk p.img --to '\(site.root)/lines.img'")
        // The bytes are the base's and the redo logs' replayed over it: at least the disk's.
        let last = export.stderr.split(separator: "\n").last.map(String.init) ?? ""
        let total = last.wholeMatch(of: #/export p\.img: 100% \((\d+) of (\d+) bytes\)/#)
        #expect(export.ok && total != nil && total?.1 == total?.2 && Int(total?.2 ?? "") ?? 0 >= 8 << 20, "\(export.stderr)")

        // A real terminal: the bar is drawn in place and ends at 100%.
        if !Shell.run("command -v tmux").ok { Shell.must("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null") }
        // A server of its own (-L): other tmux users on the machine are not touched.
        let tmux = "tmux -L ops-observe-\(getpid())", session = "obs"
        Shell.must("\(tmux) new-session -d -s \(session) -x 150 -y 10")
        defer { Shell.run("\(tmux) kill-server") }
        Shell.must("\(tmux) send-keys -t \(session) \"'$RFS' export pv --target '\(store)' --point latest --disk p.img --to '\(site.root)/bar.img'; echo EXPORT-DONE\" Enter")
        var pane = ""
        for _ in 0..<100 {
            pane = Shell.run("\(tmux) capture-pane -p -t \(session)").stdout
            if pane.contains("\nEXPORT-DONE") { break }
            usleep(100_000)
        }
        let bar = pane.split(separator: "\n").first { $0.hasPrefix("export p.img [") }
        #expect(bar?.contains("] 100% 8.0 MiB/8.0 MiB") == true && bar?.contains("[" + String(repeating: "#", count: 10)) == true, "pane:\n\(pane)")
        #expect(!pane.contains("export p.img: "), "plain lines in a terminal:\n\(pane)")
        #expect(Shell.sha256(site.root + "/bar.img") == Shell.sha256(site.root + "/lines.img"))
        site.unmount()
    }
}
