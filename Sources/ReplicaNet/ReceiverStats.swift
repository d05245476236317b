import Synchronization

/// What a receiver took in since it started, answered by `GET /v1/stats`: the data bodies as
/// they crossed the network (compressed or not) and the raw bytes written per kind. Tests and
/// operators use it to see that a resumed transfer sent nothing twice beyond the interrupted
/// chunk (a sender's own counters cannot tell what reached the other side).
public final class ReceiverStats: Sendable {
    /// The answer of `GET /v1/stats`.
    public struct Snapshot: Codable, Sendable, Equatable {
        /// Request bodies received (bytes on the wire, before inflating).
        public var bodyBytes: Int64
        /// Raw bytes written into staged log uploads (`PUT /vms/{vm}/uploads/{name}`).
        public var uploadBytes: Int64
        /// Raw bytes written into initial copies (`PUT /vms/{vm}/seed/{disk}`).
        public var seedBytes: Int64
        /// Raw bytes written into resync and rebase work copies (`PUT /vms/{vm}/work/{disk}`).
        public var workBytes: Int64
        /// Requests answered under /v1/vms.
        public var requests: Int64
    }

    private let body = Atomic<Int64>(0)
    private let upload = Atomic<Int64>(0)
    private let seed = Atomic<Int64>(0)
    private let work = Atomic<Int64>(0)
    private let count = Atomic<Int64>(0)

    public init() {}

    func request(bodyBytes: Int) {
        count.add(1, ordering: .relaxed)
        body.add(Int64(bodyBytes), ordering: .relaxed)
    }

    func wroteUpload(_ n: Int) { upload.add(Int64(n), ordering: .relaxed) }
    func wroteSeed(_ n: Int) { seed.add(Int64(n), ordering: .relaxed) }
    func wroteWork(_ n: Int) { work.add(Int64(n), ordering: .relaxed) }

    public var snapshot: Snapshot {
        Snapshot(bodyBytes: body.load(ordering: .relaxed), uploadBytes: upload.load(ordering: .relaxed),
                 seedBytes: seed.load(ordering: .relaxed), workBytes: work.load(ordering: .relaxed),
                 requests: count.load(ordering: .relaxed))
    }
}
