import Synchronization

/// What `serve --disks-dir` took in since it started, answered by `GET /v1/site/stats`: the
/// request bodies and the bytes written into disks and into staged reverse logs. Tests and
/// operators see there what a reprotect or failback really sent (full-download: every byte;
/// block comparison: the differing blocks) and that a resumed reverse-log upload wrote each
/// byte of a log once (`logBytes` equals `appliedLogBytes` once the logs are replayed).
public final class SiteStats: Sendable {
    /// The answer of `GET /v1/site/stats`.
    public struct Snapshot: Codable, Sendable, Equatable {
        /// Request bodies received (bytes on the wire).
        public var bodyBytes: Int64
        /// Bytes written into disks (`PUT /site/disks/{disk}/data`).
        public var diskBytes: Int64
        /// Bytes written into staged reverse logs (`PUT /site/logs/{name}`).
        public var logBytes: Int64
        /// The sizes of the staged reverse logs replayed onto disks (`POST .../apply`).
        public var appliedLogBytes: Int64
        /// Reverse logs replayed.
        public var appliedLogs: Int64
        /// Requests answered under /v1/site.
        public var requests: Int64
    }

    private let body = Atomic<Int64>(0)
    private let disk = Atomic<Int64>(0)
    private let log = Atomic<Int64>(0)
    private let applied = Atomic<Int64>(0)
    private let appliedCount = Atomic<Int64>(0)
    private let count = Atomic<Int64>(0)

    public init() {}

    func request(bodyBytes: Int) {
        count.add(1, ordering: .relaxed)
        body.add(Int64(bodyBytes), ordering: .relaxed)
    }

    func wroteDisk(_ n: Int) { disk.add(Int64(n), ordering: .relaxed) }
    func wroteLog(_ n: Int) { log.add(Int64(n), ordering: .relaxed) }
    func appliedLog(size: Int64) {
        applied.add(size, ordering: .relaxed)
        appliedCount.add(1, ordering: .relaxed)
    }

    public var snapshot: Snapshot {
        Snapshot(bodyBytes: body.load(ordering: .relaxed), diskBytes: disk.load(ordering: .relaxed),
                 logBytes: log.load(ordering: .relaxed), appliedLogBytes: applied.load(ordering: .relaxed),
                 appliedLogs: appliedCount.load(ordering: .relaxed), requests: count.load(ordering: .relaxed))
    }
}
