import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A VM's persistent event history: one JSON object per line in `<directory>/<vm>.jsonl`,
/// what an administrator asks for after the fact ("when did it go Warning, what was retried,
/// when was it failed over"). Appended by the mount daemon (health changes, retries, resyncs,
/// commits, errors) and by the failover commands, possibly at once from several processes:
/// every append holds an exclusive flock on `<directory>/.lock` and writes its line in one
/// call, so lines never interleave. Size-bounded: once the file would pass `maxBytes`, it is
/// renamed to `<vm>.jsonl.1` (replacing the previous one) and a new file starts, so a VM
/// keeps at most twice `maxBytes`. Not fsynced per event: an event is a record for people,
/// and the state it describes is made durable elsewhere.
public struct EventLog: Sendable {
    /// One entry of the history.
    public struct Event: Codable, Sendable, Equatable {
        /// ISO-8601 UTC with milliseconds, as every time in the JSON output (docs/json.md).
        public var time: String
        public var vm: String
        /// What happened: one of `EventLog.Kind`'s raw values.
        public var kind: String
        /// normal, warning or critical: how much an administrator should care.
        public var level: String
        public var message: String
        /// The recovery point the event made or used, when there is one.
        public var point: Int?
        /// Bytes the event moved (a commit's shipped log bytes, a resync's bytes sent), when any.
        public var bytes: Int64?

        public init(time: String = EventLog.timestamp(), vm: String, kind: Kind, level: Health = .normal, message: String,
                    point: Int? = nil, bytes: Int64? = nil) {
            self.time = time
            self.vm = vm
            self.kind = kind.rawValue
            self.level = level.rawValue
            self.message = message
            self.point = point
            self.bytes = bytes
        }

        /// The event's time as a date (nil when the line was written by hand and is not ISO-8601).
        public var date: Date? { ISOTime.parse(time) }
    }

    /// The kinds of event.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// The VM's health changed (normal, warning, critical).
        case health
        /// A recoverable failure: the attempt is retried after a back-off.
        case retry
        /// A failure that is not retried (Critical) or a step that failed.
        case error
        /// A resync was required, ran, or ended.
        case resync
        /// The initial copy of the VM's disks finished.
        case initialCopy = "initial-copy"
        /// A recovery point was committed at the target.
        case commit
        /// A failover started, was cleaned up, committed or remounted.
        case failover
        /// Reverse replication or failback.
        case failback
        /// The administrator acted: resume.
        case resume
    }

    /// Past this size a VM's file is rotated (1 MiB: some thousands of events).
    public static let defaultMaxBytes = 1 << 20

    public let directory: String
    public let maxBytes: Int

    public init(directory: String, maxBytes: Int = EventLog.defaultMaxBytes) {
        self.directory = directory
        self.maxBytes = max(4096, maxBytes)
    }

    /// The history of the VMs protected in a disks directory, beside their policies.
    public init(disksDir: String) {
        self.init(directory: StateDirectory.path(disksDir: disksDir) + "/events")
    }

    /// The history of the failovers this host ran whose VM's disks are not on this host:
    /// `REPLICAFS_EVENT_DIR`, or `/var/lib/replicafs/events`.
    public static func host(environment: [String: String] = ProcessInfo.processInfo.environment) -> EventLog {
        EventLog(directory: environment["REPLICAFS_EVENT_DIR"] ?? "/var/lib/replicafs/events")
    }

    /// Now as the events write it: ISO-8601 UTC with milliseconds.
    public static func timestamp(_ date: Date = Date()) -> String {
        ISOTime.format(date)
    }

    public func path(vm: String) -> String { directory + "/" + vm + ".jsonl" }

    /// Appends one event (creating the directory, mode 0755, on first use). Its time is set
    /// here, under the lock, so that the file's order is the order of the times.
    public func append(_ event: Event) throws {
        try FileSystem.mkdirs(directory)
        let lock = try FileDescriptor.open(directory + "/.lock", O_RDWR | O_CREAT, mode: 0o600)
        defer { lock.close() }
        try lock.lock(exclusive: true)
        var stamped = event
        stamped.time = Self.timestamp()
        var line = Array(try JSONEncoder.sortedCompact.encode(stamped))
        line.append(UInt8(ascii: "\n"))
        let file = path(vm: event.vm)
        if let size = try? FileSystem.stat(file).st_size, Int(size) + line.count > maxBytes {
            guard Glibc.rename(file, file + ".1") == 0 else { throw SystemError.current("rename", file) }
        }
        let fd = try FileDescriptor.open(file, O_WRONLY | O_CREAT | O_APPEND, mode: 0o644)
        defer { fd.close() }
        // One write of the whole line (O_APPEND: at the end whatever the offset says).
        try line.withUnsafeBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) }
    }

    /// Appends, saying in the daemon log (not throwing) when the history cannot be written:
    /// an unwritable history must not stop replication or a failover.
    public func record(_ event: Event) {
        do { try append(event) } catch {
            DaemonLog.logger.warning("\(event.vm): cannot record the event '\(event.message)' in \(directory): \(error)")
        }
    }

    /// The VMs that have a history here.
    public func vms() -> [String] {
        ((try? FileSystem.list(directory)) ?? []).filter { $0.hasSuffix(".jsonl") }.map { String($0.dropLast(6)) }.sorted()
    }

    /// A VM's events, oldest first (the rotated file's, then the current one's), at or after
    /// `since`. A line that does not parse (cut by a crash, edited by hand) is skipped.
    public func events(vm: String, since: Date? = nil) -> [Event] {
        var out: [Event] = []
        for file in [path(vm: vm) + ".1", path(vm: vm)] {
            guard let bytes = try? FileSystem.readFile(file) else { continue }
            for line in bytes.split(separator: UInt8(ascii: "\n")) {
                guard let e = try? JSONDecoder().decode(Event.self, from: Data(line)) else { continue }
                if let since, let d = e.date, d < since { continue }
                out.append(e)
            }
        }
        return out
    }
}

extension JSONEncoder {
    /// One line, keys sorted: the form of an event line.
    static var sortedCompact: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
