import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaStore
import ReplicaSystem

/// `replicafs events [<vm>] [--since T] [--json]`: the persistent history of the VMs known on
/// this host: health changes, retries, resyncs, commits, errors (recorded by the mount
/// daemons beside the VMs' policies) and failovers (recorded by the failover commands).
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show the event history of protected VMs: health changes, retries, resyncs, commits, failovers, errors.",
        discussion: """
            Read from the disks directory of every running mount, from each --disks-dir, and from this host's \
            event directory (REPLICAFS_EVENT_DIR, default /var/lib/replicafs/events) where failovers of VMs \
            whose disks are elsewhere are recorded. Oldest first; each VM keeps about 2 MiB of history.
            """)

    @Argument(help: "VM name (default: every VM with a history).") var vm: String?
    @Option(help: "Only events at or after this time: ISO-8601 (2026-11-23T18:30:00Z) or a duration ago (10m, 2h, 1d).")
    var since: String?
    @Option(name: .customLong("disks-dir"), help: "Also read the history of the VMs protected in this directory (repeat).")
    var disksDirs: [String] = []
    @OptionGroup var output: OutputOptions

    func run() throws {
        if let vm, !ProtectedVM.validName(vm) {
            throw ReplicaError("bad VM name '\(vm)': use letters, digits, '.', '_' and '-'")
        }
        let from = try since.map { try Self.parseSince($0) }
        for dir in disksDirs where !FileSystem.isDirectory(dir) { throw ReplicaError("disks directory \(dir) does not exist") }
        var logs: [EventLog] = []
        var seen = Set<String>()
        let dirs = try disksDirs.map { try FileSystem.realPath($0) } + MountRegistry().all().map(\.disksDir)
        for dir in dirs where seen.insert(dir).inserted { logs.append(EventLog(disksDir: dir)) }
        logs.append(EventLog.host())
        let names = vm.map { [$0] } ?? Array(Set(logs.flatMap { $0.vms() })).sorted()
        if let vm, !logs.contains(where: { $0.vms().contains(vm) }) {
            throw ReplicaError("no events recorded for VM \(vm) (looked in \(logs.map(\.directory).joined(separator: ", "))): give its --disks-dir if its mount is not running")
        }
        var events: [EventLog.Event] = []
        for name in names { events += logs.flatMap { $0.events(vm: name, since: from) } }
        // One time form for every event (ISO-8601 UTC with milliseconds): text order is time order.
        events.sort { ($0.time, $0.vm) < ($1.time, $1.vm) }
        if output.json { return try printJSON(events) }
        if events.isEmpty { print("no events\(since.map { " since \($0)" } ?? "")") }
        for e in events {
            var line = "\(e.time)  \(e.vm)  \(e.level.padding(toLength: 8, withPad: " ", startingAt: 0))  \(e.kind.padding(toLength: 12, withPad: " ", startingAt: 0))  \(e.message)"
            if line.hasSuffix(" ") { line = String(line.reversed().drop { $0 == " " }.reversed()) }
            print(line)
        }
    }

    /// An ISO-8601 time, or a duration before now (`10m`, `2h`, `1d`, seconds).
    static func parseSince(_ text: String) throws -> Date {
        if let date = ISOTime.parse(text) { return date }
        if let ago = try? ReplicationPolicy.seconds(text, what: "--since"), text != "continuous" {
            return Date(timeIntervalSinceNow: -ago)
        }
        throw ReplicaError("bad --since '\(text)': give an ISO-8601 time (2026-11-23T18:30:00Z) or a duration ago (10m, 2h, 1d)")
    }
}
