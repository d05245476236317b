import Foundation
import ReplicaSystem

/// The seeds' limits on a policy an operator sets (`protect`, `policy create`, `protect
/// --update`, `policy apply`): copy frequency continuous, 30 s, 5 min or 15 min; app-consistent
/// points every 1 to 12 hours; retention at least the copy frequency; a bandwidth limit that
/// parses. Checked before anything is written, so a refused value changes nothing.
extension ReplicationPolicy {
    /// The copy frequencies the seeds allow, in seconds (0 is continuous).
    public static let allowedCopyFrequencies: [Double] = [0, 30, 300, 900]
    /// App-consistent points: every 1 to 12 hours.
    public static let appConsistentRange: ClosedRange<Double> = 3600...(12 * 3600)
    /// Set to 1 (tests, benchmarks only) to accept any copy frequency, app-consistent interval
    /// and retention, e.g. `--copy-frequency 1s` for a test that must not wait 30 s.
    public static let anyFrequencyVariable = "REPLICAFS_ALLOW_ANY_FREQUENCY"

    /// `validate()` and the seeds' limits (which `REPLICAFS_ALLOW_ANY_FREQUENCY=1` lifts).
    public func validateRules(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        try validate()
        if let maxBandwidth { try Self.checkBandwidth(maxBandwidth) }
        guard environment[Self.anyFrequencyVariable] != "1" else { return }
        guard Self.allowedCopyFrequencies.contains(copyFrequency) else {
            throw ReplicaError("bad --copy-frequency \(Self.describe(copyFrequency)): use continuous, 30s, 5m or 15m", code: .badRequest)
        }
        if let every = appConsistentEvery, !Self.appConsistentRange.contains(every) {
            throw ReplicaError("bad --app-consistent-every \(Self.describe(every)): use 1h to 12h (or off)", code: .badRequest)
        }
        guard retention > 0, retention >= copyFrequency else {
            throw ReplicaError("bad --retention \(retention == 0 ? "0s" : Self.describe(retention)): keep points at least as long as the copy frequency (\(Self.describe(copyFrequency)))", code: .badRequest)
        }
    }

    /// A duration as the options write it: continuous, 30s, 5m, 2h, else seconds.
    public static func describe(_ seconds: Double) -> String {
        if seconds == 0 { return "continuous" }
        for (unit, size) in [("d", 86400.0), ("h", 3600), ("m", 60)] where seconds >= size && seconds.truncatingRemainder(dividingBy: size) == 0 {
            return "\(Int(seconds / size))\(unit)"
        }
        return seconds == seconds.rounded() ? "\(Int(seconds))s" : "\(seconds)s"
    }

    /// Checks a bandwidth limit: `unlimited`, a rate such as `20MB/s` (B, KB, MB, GB per
    /// second), or a schedule of `HH:MM-HH:MM=RATE` entries and a `*=RATE` default, comma-separated.
    public static func checkBandwidth(_ text: String) throws {
        func rate(_ r: Substring) -> Bool {
            if r == "unlimited" { return true }
            guard r.hasSuffix("B/s") else { return false }
            var number = r.dropLast(3)
            if let last = number.last, "KMG".contains(last) { number = number.dropLast() }
            guard let n = Double(number) else { return false }
            return n.isFinite && n > 0
        }
        func clock(_ t: Substring) -> Bool {
            let p = t.split(separator: ":")
            guard p.count == 2, p[0].count == 2, p[1].count == 2, let h = Int(p[0]), let m = Int(p[1]) else { return false }
            return (0..<24).contains(h) && (0..<60).contains(m)
        }
        let bad = ReplicaError("bad --max-bandwidth '\(text)': use unlimited, a rate such as 20MB/s, or a schedule such as 08:00-18:00=10MB/s,*=unlimited", code: .badRequest)
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        guard !text.isEmpty, text.count <= 1000 else { throw bad }
        if entries.count == 1, !text.contains("=") {
            guard rate(entries[0]) else { throw bad }
            return
        }
        for entry in entries {
            let kv = entry.split(separator: "=", omittingEmptySubsequences: false)
            guard kv.count == 2, rate(kv[1]) else { throw bad }
            if kv[0] == "*" { continue }
            let span = kv[0].split(separator: "-", omittingEmptySubsequences: false)
            guard span.count == 2, clock(span[0]), clock(span[1]) else { throw bad }
        }
    }
}
