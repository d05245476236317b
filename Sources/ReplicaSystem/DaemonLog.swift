import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The daemons' log: one line per event on standard error (the mount's `.log` file in the
/// run directory), with a UTC timestamp to the millisecond and a level:
/// `2026-12-01T15:30:00.123Z warning replicafs: <message>`.
public enum DaemonLog {
    /// The logger every layer writes to.
    public static let logger = Logger(label: "replicafs")

    /// Routes swift-log to `DaemonLogHandler`; the daemons call it once at start-up.
    public static func bootstrap(level: Logger.Level = .info) {
        LoggingSystem.bootstrap { _ in
            var handler = DaemonLogHandler()
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes swift-log records as single lines on standard error.
public struct DaemonLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    public init() {}

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let tags = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = "\(Self.timestamp()) \(event.level) replicafs: \(event.message)\(tags)\n"
        line.utf8CString.withUnsafeBufferPointer { buf in
            _ = write(STDERR_FILENO, buf.baseAddress, buf.count - 1)
        }
    }

    /// Now in UTC, ISO 8601 with milliseconds.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ts.tv_nsec / 1_000_000))
    }
}
