import Foundation
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Holds the bytes a replication sends to a set rate (`--max-bandwidth`): "20MB/s", "512KB/s",
/// "unlimited", or a schedule by local time of day such as "08:00-18:00=10MB/s,*=unlimited"
/// (initial copy outside peak hours). A token bucket shared by every thread that sends: each
/// caller takes its bytes and sleeps off the debt, so concurrent senders together hold the
/// rate. A caller that comes back within a second of a wait has the time since credited in
/// full (it was sending what it paid for), so per-request and per-commit time does not pull
/// a throttled transfer below the rate; after a longer pause only the burst is there. The time spent waiting is counted, so lag and health can say the VM is throttled
/// rather than late.
///
/// Units: B, kB/KB (1000), MB (10^6), GB (10^9), KiB (1024), MiB, GiB; always per second
/// ("/s"). Lower-case "b" (bits) is refused. A schedule is a comma-separated list of
/// `HH:MM-HH:MM=RATE` windows (the first that contains the time wins; a window may wrap past
/// midnight; 24:00 is the end of the day) and at most one `*=RATE` for all other times
/// (without it, other times are unlimited).
public final class BandwidthLimiter: Sendable {
    /// Bytes per second, or nil for no limit.
    public struct Rate: Equatable, Sendable, CustomStringConvertible {
        public let bytesPerSecond: Int?
        public static let unlimited = Rate(bytesPerSecond: nil)

        public init(bytesPerSecond: Int?) { self.bytesPerSecond = bytesPerSecond }

        /// "20MB/s", "512KB/s", "1.5MiB/s", "unlimited".
        public static func parse(_ text: String) throws -> Rate {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.lowercased() == "unlimited" { return .unlimited }
            let bad = ReplicaError("bad bandwidth '\(text)': use a rate like 20MB/s, 512KB/s or 1MiB/s, or unlimited", code: .badRequest)
            guard trimmed.hasSuffix("/s") else { throw bad }
            let amount = trimmed.dropLast(2)
            guard let split = amount.firstIndex(where: { !($0.isNumber || $0 == ".") }) else { throw bad }
            let multipliers: [String: Double] = [
                "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824,
            ]
            guard let number = Double(amount[..<split]), let multiplier = multipliers[String(amount[split...])],
                  number.isFinite, number > 0
            else { throw bad }
            let bytes = number * multiplier
            guard bytes >= 1, bytes < 1e15 else {
                throw ReplicaError("bad bandwidth '\(text)': the rate must be between 1B/s and 1000TB/s", code: .badRequest)
            }
            return Rate(bytesPerSecond: Int(bytes))
        }

        public var description: String {
            guard let rate = bytesPerSecond else { return "unlimited" }
            for (unit, size) in [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000)] where rate >= size && rate % size == 0 {
                return "\(rate / size)\(unit)/s"
            }
            return "\(rate)B/s"
        }
    }

    /// Rates by local time of day.
    public struct Schedule: Equatable, Sendable {
        public struct Window: Equatable, Sendable {
            /// Minutes after midnight; `end` is exclusive and may be less than `start` (wraps).
            public let start: Int
            public let end: Int
            public let rate: Rate

            func contains(_ minute: Int) -> Bool {
                start < end ? (minute >= start && minute < end) : (minute >= start || minute < end)
            }
        }
        public let windows: [Window]
        /// The rate outside every window (`*=`), unlimited when not given.
        public let otherwise: Rate

        /// One rate all day.
        public init(constant rate: Rate) {
            windows = []
            otherwise = rate
        }

        public init(windows: [Window], otherwise: Rate) {
            self.windows = windows
            self.otherwise = otherwise
        }

        /// A plain rate ("20MB/s", "unlimited") or a schedule ("08:00-18:00=10MB/s,*=unlimited").
        public static func parse(_ text: String) throws -> Schedule {
            guard text.contains("=") else { return Schedule(constant: try Rate.parse(text)) }
            var windows: [Window] = []
            var otherwise: Rate?
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                let entry = part.trimmingCharacters(in: .whitespaces)
                let bad = ReplicaError("bad bandwidth schedule entry '\(entry)' in '\(text)': use HH:MM-HH:MM=RATE or *=RATE,"
                    + " for example 08:00-18:00=10MB/s,*=unlimited", code: .badRequest)
                let sides = entry.split(separator: "=", omittingEmptySubsequences: false)
                guard sides.count == 2 else { throw bad }
                let rate = try Rate.parse(String(sides[1]))
                if sides[0] == "*" {
                    guard otherwise == nil else {
                        throw ReplicaError("bad bandwidth schedule '\(text)': more than one '*=' entry", code: .badRequest)
                    }
                    otherwise = rate
                    continue
                }
                let times = sides[0].split(separator: "-", omittingEmptySubsequences: false)
                guard times.count == 2, let start = minutes(times[0]), let end = minutes(times[1]), start < 24 * 60 else { throw bad }
                guard start != end else {
                    throw ReplicaError("bad bandwidth schedule entry '\(entry)': the window is empty; use *=RATE for all day",
                                       code: .badRequest)
                }
                windows.append(Window(start: start, end: end, rate: rate))
            }
            return Schedule(windows: windows, otherwise: otherwise ?? .unlimited)
        }

        /// "HH:MM" (00:00 to 24:00) as minutes after midnight.
        static func minutes(_ text: Substring) -> Int? {
            let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
                  let hours = Int(parts[0]), let minutes = Int(parts[1]), (0...24).contains(hours), (0..<60).contains(minutes),
                  hours < 24 || minutes == 0
            else { return nil }
            return hours * 60 + minutes
        }

        /// The rate at `date` in `timeZone` (local time by default).
        public func rate(at date: Date, timeZone: TimeZone = .current) -> Rate {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            let parts = calendar.dateComponents([.hour, .minute], from: date)
            let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
            return windows.first { $0.contains(minute) }?.rate ?? otherwise
        }
    }

    private struct State {
        /// Bytes that may go now; negative while callers sleep off what they took.
        var tokens: Double = 0
        var last: ContinuousClock.Instant
        var rate: Rate = .unlimited
        var throttled: Duration = .zero
        var lastThrottled: ContinuousClock.Instant?
        var bytes: Int64 = 0
        /// What the last call took (the most a busy caller's time is credited).
        var lastBytes = 0
    }

    public let schedule: Schedule
    private let timeZone: TimeZone
    private let state: Mutex<State>
    /// The burst a sender may take without waiting: a tenth of a second at the current rate.
    private static let burstSeconds = 0.1
    /// A caller back within this many seconds after a wait was busy sending, not idle.
    private static let busySeconds = 1.0

    /// A limiter for `text` (a rate or a schedule); a clear error for anything else.
    public convenience init(_ text: String) throws {
        self.init(schedule: try Schedule.parse(text))
    }

    public init(schedule: Schedule, timeZone: TimeZone = .current) {
        self.schedule = schedule
        self.timeZone = timeZone
        state = Mutex(State(last: .now))
    }

    /// The rate in force now.
    public var currentRate: Rate { schedule.rate(at: Date(), timeZone: timeZone) }

    /// Blocks the calling thread until `bytes` may be sent at the rate in force now. Never
    /// from a NIO event loop; from a sender's own thread or a FUSE worker it is what is meant.
    public func throttle(_ bytes: Int) {
        guard bytes > 0 else { return }
        let rate = currentRate
        let wait: Double = state.withLock { state in
            state.bytes += Int64(bytes)
            let now = ContinuousClock.now
            guard let perSecond = rate.bytesPerSecond.map(Double.init) else {
                state.rate = rate
                state.tokens = 0
                state.last = now
                return 0
            }
            let burst = perSecond * Self.burstSeconds
            if state.rate != rate {
                // A new window: start from a full burst at the new rate, forget the old debt.
                state.rate = rate
                state.tokens = burst
            } else {
                let elapsed = now - state.last
                var cap = burst
                if let end = state.lastThrottled, end <= now, Self.seconds(now - end) < Self.busySeconds {
                    // Back soon after a wait: the time since went on sending what was paid for
                    // (a request on the wire, a commit), so it counts in full, not as idle time
                    // capped at the burst; else every request's own time would slow the rate.
                    // A longer gap is idle: only the burst (no lump after a pause).
                    // Never more than the last call paid for: a short idle gap after a
                    // throttled transfer gives at most one request's bytes.
                    cap = max(burst, min(perSecond * Self.seconds(now - end), Double(state.lastBytes)))
                }
                state.tokens = min(cap, state.tokens + perSecond * Self.seconds(elapsed))
            }
            state.last = now
            state.lastBytes = bytes
            state.tokens -= Double(bytes)
            guard state.tokens < 0 else { return 0 }
            let wait = -state.tokens / perSecond
            state.throttled += .nanoseconds(Int64(wait * 1e9))
            state.lastThrottled = now + .nanoseconds(Int64(wait * 1e9))
            return wait
        }
        if wait > 0 { Self.sleep(seconds: wait) }
    }

    /// The total time callers spent waiting in `throttle`.
    public var throttledTime: Duration { state.withLock { $0.throttled } }

    /// The bytes that went through `throttle`.
    public var bytesThrottled: Int64 { state.withLock { $0.bytes } }

    /// Whether a caller waited (or still waits) within the last `seconds`: "throttled" in
    /// lag and health, rather than "behind".
    public func throttled(within seconds: Double) -> Bool {
        state.withLock { state in
            guard let last = state.lastThrottled else { return false }
            return ContinuousClock.now - last < .nanoseconds(Int64(seconds * 1e9))
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    private static func sleep(seconds: Double) {
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR {
            request = remaining
        }
    }
}
