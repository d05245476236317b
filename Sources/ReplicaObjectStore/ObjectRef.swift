/// An immutable object the catalog refers to, with what a reader checks it against: its size
/// and the SHA-256 of its bytes (corrupt or truncated objects are never applied).
public struct ObjectRef: Codable, Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var sha256: String

    public init(key: String, size: Int64, sha256: String) {
        self.key = key
        self.size = size
        self.sha256 = sha256
    }
}

/// A stored redo log: the log object and its extent index (`LogIndex`).
public struct LogRef: Codable, Sendable, Equatable {
    public var log: ObjectRef
    public var index: ObjectRef
}
