/// What an `S3Bucket` has done since it was made: for tests that prove a resumed upload sent
/// only the missing parts, and for benchmarks.
public struct S3Counters: Sendable, Equatable {
    /// HTTP requests answered (any status), retries included.
    public var requests = 0
    /// Requests sent again after a lost connection or a 5xx.
    public var retries = 0
    /// Body bytes of PUTs the server accepted (objects and parts).
    public var bytesSent: Int64 = 0
    /// Parts of multipart uploads sent and accepted.
    public var partsSent = 0
    /// Parts an interrupted upload had stored already, checked and kept instead of sent.
    public var partsReused = 0
    /// Multipart uploads that went on with an upload found in the bucket.
    public var uploadsResumed = 0

    public init() {}
}
