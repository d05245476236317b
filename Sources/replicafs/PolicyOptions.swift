import ArgumentParser
import ReplicaStore
import ReplicaSystem

/// The settings of a replication policy as options, shared by `protect` (new or `--update`)
/// and `policy create`. Each is optional: only the given ones change a policy. `off` turns
/// app-consistent points off, `unlimited` the bandwidth limit, an empty hook removes it.
struct PolicyOptions: ParsableArguments {
    @Option(help: "continuous, 30s, 5m or 15m (default 5m).") var copyFrequency: String?
    @Option(help: "How long recovery points are kept, at least the copy frequency (default 24h).") var retention: String?
    @Option(help: "Interval of scheduled app-consistent points: 1h to 12h, or off (the default).") var appConsistentEvery: String?
    @Option(help: "Command run before an app-consistent cut (e.g. fsfreeze -f /mnt/fs); empty removes it.") var quiesce: String?
    @Option(help: "Command run after an app-consistent cut, also when it failed; empty removes it.") var thaw: String?
    @Flag(inversion: .prefixedNo, help: "Compress logs in transit (zlib); off by default.") var compress: Bool?
    @Option(help: "Bandwidth limit: 20MB/s, a schedule such as 08:00-18:00=10MB/s,*=unlimited, or unlimited (the default).")
    var maxBandwidth: String?

    /// No setting given.
    var isEmpty: Bool {
        copyFrequency == nil && retention == nil && appConsistentEvery == nil && quiesce == nil && thaw == nil
            && compress == nil && maxBandwidth == nil
    }

    /// `policy` with the given settings; parse errors name the option. The seeds' limits are
    /// checked by the caller on the whole result (`validateRules`).
    func applied(to policy: ReplicationPolicy) throws -> ReplicationPolicy {
        var p = policy
        if let copyFrequency { p.copyFrequency = try ReplicationPolicy.seconds(copyFrequency, what: "--copy-frequency") }
        if let retention { p.retention = try ReplicationPolicy.seconds(retention, what: "--retention") }
        if let every = appConsistentEvery {
            p.appConsistentEvery = every == "off" ? nil : try ReplicationPolicy.seconds(every, what: "--app-consistent-every")
        }
        if let quiesce { p.quiesce = quiesce.isEmpty ? nil : quiesce }
        if let thaw { p.thaw = thaw.isEmpty ? nil : thaw }
        if let compress { p.compress = compress }
        if let maxBandwidth { p.maxBandwidth = maxBandwidth == "unlimited" ? nil : maxBandwidth }
        return p
    }
}

extension ReplicationPolicy {
    /// The settings a named policy holds, one line each, for `policy show` and `protect --update`.
    var settingLines: [(String, String)] {
        [("copy frequency", Self.describe(copyFrequency)), ("retention", Self.describe(retention)),
         ("app-consistent every", appConsistentEvery.map(Self.describe) ?? "off"), ("compress", compress ? "yes" : "no"),
         ("quiesce", quiesce ?? "none"), ("thaw", thaw ?? "none"), ("max bandwidth", maxBandwidth ?? "unlimited")]
    }

    /// The settings and the VM's own monitoring ones.
    var allLines: [(String, String)] {
        settingLines + [("rpo", Self.describe(effectiveRPO)), ("resync threshold", "\(resyncThreshold ?? 50)%"),
                        ("resync window", resyncWindow ?? "default")]
    }

    /// "copy frequency 5m -> 30s, ..." for the settings that differ from `old`.
    func changes(from old: ReplicationPolicy) -> String {
        zip(old.allLines, allLines).filter { pair in pair.0.1 != pair.1.1 }
            .map { pair in "\(pair.0.0) \(pair.0.1) -> \(pair.1.1)" }.joined(separator: ", ")
    }
}
