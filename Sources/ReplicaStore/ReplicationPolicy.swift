import Foundation
import ReplicaSystem

/// How a protected VM is replicated (the seeds' policy settings).
public struct ReplicationPolicy: Codable, Sendable, Equatable {
    /// Seconds between delta cycles; 0 means continuous (ship as soon as data is logged).
    public var copyFrequency: Double = 300
    /// Seconds of recovery points kept.
    public var retention: Double = 24 * 3600
    /// Seconds between scheduled app-consistent points; nil is off.
    public var appConsistentEvery: Double?
    /// Shell commands run around an app-consistent cut (fsfreeze -f / -u, a database checkpoint).
    public var quiesce: String?
    public var thaw: String?
    /// Compress logs in transit (zlib).
    public var compress = false
    /// When the initial replication may start (seconds since the epoch); nil is now.
    public var initialAt: Double?
    /// Lag (seconds) past which the VM's health is Warning; nil is `defaultRPO`.
    public var rpo: Double?
    /// Scales the retry back-off (0.01 makes a minute 0.6 s); nil is REPLICAFS_TIME_SCALE or 1.
    public var retryTimeScale: Double?
    /// Resync when a disk's pending log bytes exceed this percent of its size; nil is 50.
    public var resyncThreshold: Double?
    /// When automatic resyncs may run: "HH:MM-HH:MM" (local) or "always"; nil is 18:30-06:00.
    public var resyncWindow: String?
    /// Bandwidth limit or schedule for shipping to the target ("20MB/s",
    /// "08:00-18:00=10MB/s,*=unlimited"); nil is unlimited.
    public var maxBandwidth: String?

    public init() {}

    /// Twice the copy frequency, and at least a minute: one late cycle is not yet a warning.
    public var defaultRPO: Double { max(60, 2 * copyFrequency) }
    public var effectiveRPO: Double { rpo ?? defaultRPO }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        copyFrequency = try c.decode(Double.self, forKey: .copyFrequency)
        retention = try c.decode(Double.self, forKey: .retention)
        appConsistentEvery = try c.decodeIfPresent(Double.self, forKey: .appConsistentEvery)
        quiesce = try c.decodeIfPresent(String.self, forKey: .quiesce)
        thaw = try c.decodeIfPresent(String.self, forKey: .thaw)
        compress = try c.decodeIfPresent(Bool.self, forKey: .compress) ?? false
        initialAt = try c.decodeIfPresent(Double.self, forKey: .initialAt)
        rpo = try c.decodeIfPresent(Double.self, forKey: .rpo)
        retryTimeScale = try c.decodeIfPresent(Double.self, forKey: .retryTimeScale)
        resyncThreshold = try c.decodeIfPresent(Double.self, forKey: .resyncThreshold)
        resyncWindow = try c.decodeIfPresent(String.self, forKey: .resyncWindow)
        maxBandwidth = try c.decodeIfPresent(String.self, forKey: .maxBandwidth)
    }

    /// Parses `--initial`: "now", "HH:MM" (the next such time, local), or an ISO-8601 time.
    public static func startTime(_ text: String, now: Date = Date()) throws -> Double? {
        if text == "now" { return nil }
        let parts = text.split(separator: ":")
        if parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m) {
            var cal = Calendar.current
            cal.timeZone = TimeZone.current
            guard let next = cal.nextDate(after: now, matching: DateComponents(hour: h, minute: m), matchingPolicy: .nextTime) else {
                throw ReplicaError("bad --initial time '\(text)'")
            }
            return next.timeIntervalSince1970
        }
        if let date = ISOTime.parse(text) { return try TimeLimits.checkTime(date.timeIntervalSince1970, text: text) }
        throw ReplicaError("bad --initial time '\(text)': use now, HH:MM or an ISO-8601 time such as 2026-11-23T18:30:00Z")
    }

    /// Parses "continuous", "30s", "5m", "15m", "2h", "1d" or plain seconds; `what` names the
    /// option in errors. Refuses infinity, NaN, negative numbers and more than 100 years.
    public static func seconds(_ text: String, what: String = "duration") throws -> Double {
        if text == "continuous" { return 0 }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let value: Double
        if let last = text.last, let unit = units[last], let n = Double(text.dropLast()) {
            value = n * unit
        } else if let n = Double(text) {
            value = n
        } else {
            throw ReplicaError("bad duration '\(text)'\(what == "duration" ? "" : " for " + what): use continuous, 30s, 5m, 15m, 2h or seconds")
        }
        return try TimeLimits.checkDuration(value, what, text: text)
    }

    /// Checks every duration and time of the policy (what `protect` saves, so nothing out of
    /// range is ever stored): finite, not negative, within `TimeLimits`.
    public func validate() throws {
        func check(_ value: Double?, _ what: String) throws {
            guard let value else { return }
            _ = try TimeLimits.checkDuration(value, what, text: String(value))
        }
        try check(copyFrequency, "--copy-frequency")
        try check(retention, "--retention")
        try check(appConsistentEvery, "--app-consistent-every")
        try check(rpo, "--rpo")
        if let initialAt { _ = try TimeLimits.checkTime(initialAt, text: String(initialAt)) }
        if let retryTimeScale, !(retryTimeScale.isFinite && retryTimeScale > 0) {
            throw ReplicaError("bad retry time scale \(retryTimeScale): use a number above 0")
        }
        if let resyncThreshold, !(resyncThreshold.isFinite && resyncThreshold > 0) {
            throw ReplicaError("bad --resync-threshold \(resyncThreshold): use a percent of the disk size, above 0")
        }
    }
}

/// A VM under protection: a named group of images in one disks-dir, replicated together.
/// Stored at `<disks-dir>/.replicafs/vms/<name>.json`; a running daemon picks changes up.
public struct ProtectedVM: Codable, Sendable, Equatable {
    public var name: String
    public var disks: [String]
    public var target: String
    public var policy: ReplicationPolicy
    /// Source network names the VM is attached to (`protect --network`), mapped by recovery
    /// plans at failover; nil in settings written before networks were recorded.
    public var networks: [String]?
    /// How to reach a remote target (PKI, endpoint, credentials); nil for a local directory.
    public var targetOptions: TargetOptions?

    public init(name: String, disks: [String], target: String, policy: ReplicationPolicy, networks: [String]? = nil,
                targetOptions: TargetOptions? = nil) {
        self.name = name
        self.disks = disks
        self.target = target
        self.policy = policy
        self.networks = networks
        self.targetOptions = targetOptions
    }

    /// The options the daemon opens this VM's target with: the saved ones, throttled as the
    /// policy says.
    public var storeOptions: TargetOptions {
        var options = targetOptions ?? TargetOptions()
        if let limit = policy.maxBandwidth { options.maxBandwidth = limit }
        return options
    }

    public static func directory(disksDir: String) -> String { disksDir + "/.replicafs/vms" }

    public static func path(disksDir: String, vm: String) -> String { directory(disksDir: disksDir) + "/" + vm + ".json" }

    /// Every VM whose policy is trusted: the state directory passes `StateDirectory.check` and
    /// the file is root's alone (hooks in a policy run as root).
    public static func all(disksDir: String) -> [ProtectedVM] {
        let dir = directory(disksDir: disksDir)
        do {
            try StateDirectory.check(disksDir: disksDir)
        } catch {
            DaemonLog.logger.warning("ignoring VM policies: \(error)")
            return []
        }
        guard let names = try? FileSystem.list(dir) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let bytes = StateDirectory.readTrusted(dir + "/" + name) else { return nil }
            return try? JSONDecoder().decode(ProtectedVM.self, from: Data(bytes))
        }
    }

    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 128 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) }
    }

    public func save(disksDir: String) throws {
        try StateDirectory.prepare(disksDir: disksDir)
        try FileSystem.mkdirs(Self.directory(disksDir: disksDir))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = Self.path(disksDir: disksDir, vm: name)
        try encoder.encode(self).withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }
}
