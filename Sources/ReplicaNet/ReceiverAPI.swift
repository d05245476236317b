import Foundation
import ReplicaStore
import ReplicaSystem

/// The receiver's HTTP protocol (docs/secondary-site.md): the bodies that cross as JSON, the
/// limits both sides enforce, and how a `ReplicaError` travels (its text, kind and code in a
/// JSON error body with a status that says the same). Raw bytes (log and disk data, digests)
/// cross as `application/octet-stream` bodies, never inside JSON.
public enum ReceiverAPI {
    /// Path prefix of every route; a new incompatible protocol gets a new prefix.
    public static let prefix = "/v1"
    /// The largest JSON body either side accepts.
    public static let maxJSONBytes = 1 << 20
    /// The largest data chunk (one upload request): the client sends at most `chunkBytes`.
    public static let maxChunkBytes = 16 << 20
    /// What the client sends per upload request (raw bytes before compression).
    public static let chunkBytes = 8 << 20
    /// The largest range one point read may ask for.
    public static let maxReadBytes = 16 << 20
    /// Header naming the encoding of an upload body: `zlib` (deflate, zlib format) or absent.
    public static let encodingHeader = "replicafs-encoding"
    /// Header carrying an upload's raw (inflated) length when it is compressed.
    public static let rawLengthHeader = "replicafs-raw-length"

    /// An error as it crosses: the message, the kind and the code of a `ReplicaError`.
    public struct ErrorBody: Codable, Sendable {
        public var error: String
        public var kind: String
        public var code: String
        /// Set for a failed system call on the receiver (ENOSPC: the store is full).
        public var errno: Int32?

        public init(_ error: ReplicaError) {
            self.error = error.description
            kind = ErrorBody.name(of: error.kind)
            code = error.code.rawValue
        }

        public var replicaError: ReplicaError {
            ReplicaError(error, kind: ErrorBody.kind(named: kind), code: ReplicaError.Code(rawValue: code) ?? .unspecified)
        }

        static func name(of kind: ReplicaError.Kind) -> String {
            switch kind {
            case .unspecified: "unspecified"
            case .recoverable: "recoverable"
            case .nonRecoverable: "nonRecoverable"
            case .resyncRequired: "resyncRequired"
            case .waitingForResync: "waitingForResync"
            }
        }

        static func kind(named name: String) -> ReplicaError.Kind {
            switch name {
            case "recoverable": .recoverable
            case "nonRecoverable": .nonRecoverable
            case "resyncRequired": .resyncRequired
            case "waitingForResync": .waitingForResync
            default: .unspecified
            }
        }
    }

    /// The HTTP status an error answers with: 404 for what does not exist, 409 for a state
    /// conflict (resync required, already failed over), 400 for a bad request, 503 for what
    /// waiting may fix, 422 for the rest.
    public static func status(of error: ReplicaError) -> Int {
        switch error.code {
        case .unknownVM, .noSuchPoint: return 404
        case .badRequest: return 400
        case .alreadyFailedOver, .notFailedOver: return 409
        default: break
        }
        switch error.kind {
        case .resyncRequired, .waitingForResync: return 409
        case .recoverable: return 503
        default: return 422
        }
    }

    /// `commit`: the logs by disk (names the client uploaded), the point's consistency and cut.
    public struct CommitRequest: Codable, Sendable {
        public var logs: [String: [String]]
        public var consistency: RecoveryPoint.Consistency
        public var cut: UInt64
        public var timeNanos: UInt64
    }

    /// `prune`: the retention and the sender's clock.
    public struct PruneRequest: Codable, Sendable {
        public var retentionSeconds: Double
        public var nowNanos: UInt64
    }

    /// Where a disk's chain continues (a `ChainPosition` that can cross).
    public struct Chain: Codable, Sendable {
        public var chain: String
        public var nextLSN: UInt64
    }

    /// `seed/begin`: the disks and their chains; the answer is the receiver's progress
    /// (an interrupted copy's own, which wins over the request's).
    public struct SeedBegin: Codable, Sendable {
        public var disks: [String: Chain]
    }

    /// The durable size of an upload or the durable progress of a disk copy.
    public struct Offset: Codable, Sendable {
        public var offset: Int64
    }

    /// `work/prepare`: the disks to stage as of the latest point; answers their sizes.
    public struct WorkPrepare: Codable, Sendable {
        public var disks: [String]
    }

    public struct WorkSizes: Codable, Sendable {
        public var sizes: [String: Int64]
    }

    /// `resync`: the chains after the resync's cut, its reason and block size.
    public struct ResyncRequest: Codable, Sendable {
        public var chains: [String: Chain]
        public var reason: String?
        public var blockSize: Int
    }

    /// `rebase`: the block size; the answer is the point and the bytes stored.
    public struct RebaseRequest: Codable, Sendable {
        public var blockSize: Int
    }

    public struct RebaseResult: Codable, Sendable {
        public var point: RecoveryPoint
        public var bytes: Int64
    }

    /// `begin failover`.
    public struct FailoverRequest: Codable, Sendable {
        public var point: String
        public var kind: FailoverState.Kind
        public var mountpoint: String
        public var sourceDisksDir: String?
        public var workDirectory: String?
    }

    /// A point opened for reading: its id and the disk's size there.
    public struct OpenedPoint: Codable, Sendable {
        public var pointID: Int
        public var size: Int64
    }

    /// Optional results (initial copy, resync mark, failover state, metadata) and lists.
    public struct Maybe<T: Codable & Sendable>: Codable, Sendable {
        public var value: T?
        public init(_ value: T?) { self.value = value }
    }

    /// A point selector as text (`latest`, `latest-app`, an id).
    public static func text(_ selector: PointSelector) -> String {
        switch selector {
        case .latest: "latest"
        case .latestApp: "latest-app"
        case .id(let id): String(id)
        }
    }

    /// A name that may be a path segment and a file name on the receiver: a VM, disk or log.
    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && !name.hasPrefix(".")
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }
}
