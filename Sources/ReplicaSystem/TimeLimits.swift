import Foundation

/// Range checks for durations and times given by people or read from stored settings. Times
/// travel as nanoseconds in `UInt64`/`Int64`, where a number like 1e11 seconds or the year 9999
/// overflows; a parse checks against these bounds with a one-line error, and every conversion
/// of a stored value clamps, so no value can make the daemon trap.
public enum TimeLimits {
    /// The longest duration accepted: 100 years (3.2e18 ns, well inside `Int64`).
    public static let maxDurationSeconds: Double = 100 * 365.25 * 86400
    /// The latest time accepted: 2262-04-11, the last second `Int64` nanoseconds can hold.
    public static let latestTime: Double = Double(Int64.max / 1_000_000_000)

    /// `seconds` as nanoseconds, clamped to 0...maxDurationSeconds (NaN is 0, infinity the
    /// maximum): for stored values, which nothing range-checked since they were written.
    public static func clampedNanos(seconds: Double) -> UInt64 {
        guard !seconds.isNaN, seconds > 0 else { return 0 }
        return UInt64(min(seconds, maxDurationSeconds) * 1e9)
    }

    /// Checks a duration given as `what` (an option name, for the error): finite, not negative,
    /// at most `maxDurationSeconds`.
    public static func checkDuration(_ seconds: Double, _ what: String, text: String) throws -> Double {
        guard seconds.isFinite, seconds >= 0 else {
            throw ReplicaError("bad duration '\(text)' for \(what): it must be a finite number of seconds, not negative")
        }
        guard seconds <= maxDurationSeconds else {
            throw ReplicaError("bad duration '\(text)' for \(what): longer than the limit of 100 years")
        }
        return seconds
    }

    /// Checks a point in time (seconds since the epoch): between 1970 and 2262.
    public static func checkTime(_ seconds: Double, text: String) throws -> Double {
        guard seconds.isFinite, seconds >= 0, seconds <= latestTime else {
            throw ReplicaError("time '\(text)' is out of range: use a time between 1970-01-01 and 2262-04-11")
        }
        return seconds
    }

    /// A checked time as nanoseconds since the epoch.
    public static func nanos(ofTime seconds: Double, text: String) throws -> UInt64 {
        UInt64(try checkTime(seconds, text: text) * 1e9)
    }
}
