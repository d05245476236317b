import Synchronization

extension BandwidthLimiter {
    private static let registry = Mutex<[String: BandwidthLimiter]>([:])

    /// The process's limiter for the limit `text` ("20MB/s" or a schedule): every VM of a
    /// daemon with the same `--max-bandwidth` sends through one token bucket, so together they
    /// hold the rate. A changed setting is another text, hence a fresh limiter at the next cycle
    /// (no restart); nil for no limit ("unlimited" or none). A bad text is a one-line error.
    public static func shared(_ text: String?) throws -> BandwidthLimiter? {
        guard let text, !text.isEmpty else { return nil }
        let schedule = try Schedule.parse(text)
        if schedule.windows.isEmpty, schedule.otherwise == .unlimited { return nil }
        return registry.withLock { limiters in
            if let limiter = limiters[text] { return limiter }
            let limiter = BandwidthLimiter(schedule: schedule)
            limiters[text] = limiter
            return limiter
        }
    }
}
