/// A store that takes a log's bytes before the log is sealed (a receiver): it keeps them as
/// the start of that log's upload, so `receive` at the cut sends only what came after. The
/// bytes sent must be the log's for good (before any record a failed image write could still
/// take back; not necessarily durable: a mount after a crash resyncs and discards them); the
/// caller (`LogStreamer`) sees to that.
public protocol LogStreaming {
    /// Sends one request of the bytes of the log at `path`, named `name`, from `from` (what
    /// this side last knew the store held; nil when unknown: the store is asked) toward `end`.
    /// One request, so a cut waiting for the stream waits for no more, and a limit changed
    /// meanwhile applies from the next. Returns what the store now holds of that log and the
    /// bytes that crossed (after compression).
    func stream(vm: String, name: String, path: String, from: Int64?, to end: Int64,
                compress: Bool) throws -> (held: Int64, sent: Int64)
}
