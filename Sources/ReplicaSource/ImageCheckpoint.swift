import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The durable record of an image's last checkpoint: every change of log chain `chain` logged
/// before LSN `lsn` is on the image's disk, so crash recovery replays only the records from
/// `lsn` on. Kept in `<disks-dir>/.replicafs/checkpoints/<image>` as two text lines, replaced
/// atomically (written, synced, renamed, directory synced) and only after the image's sync.
public struct ImageCheckpoint: Equatable, Sendable {
    public var chain: String
    public var lsn: UInt64

    public init(chain: String, lsn: UInt64) {
        self.chain = chain
        self.lsn = lsn
    }

    static let subdirectory = "checkpoints"

    public static func path(disksDir: String, image: String) -> String {
        StateDirectory.path(disksDir: disksDir) + "/" + subdirectory + "/" + image
    }

    /// The image's checkpoint, or nil when there is none or it cannot be trusted or parsed
    /// (recovery then replays the whole last log, which is always safe: replay is idempotent).
    public static func load(disksDir: String, image: String) -> ImageCheckpoint? {
        let file = path(disksDir: disksDir, image: image)
        guard FileSystem.exists(file), let bytes = StateDirectory.readTrusted(file) else { return nil }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    static func parse(_ text: String) -> ImageCheckpoint? {
        var chain: String?
        var lsn: UInt64?
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard f.count == 2 else { continue }
            if f[0] == "chain" { chain = f[1] }
            if f[0] == "lsn" { lsn = UInt64(f[1]) }
        }
        guard let chain, let lsn, !chain.isEmpty else { return nil }
        return ImageCheckpoint(chain: chain, lsn: lsn)
    }

    /// Replaces the image's checkpoint record durably.
    public func save(disksDir: String, image: String) throws {
        let dir = StateDirectory.path(disksDir: disksDir) + "/" + Self.subdirectory
        if !FileSystem.exists(dir) { try FileSystem.mkdirs(dir, mode: 0o755) }
        let text = Array("replicafs-checkpoint 1\nchain \(chain)\nlsn \(lsn)\n".utf8)
        try text.withUnsafeBytes { try FileSystem.writeAtomically(Self.path(disksDir: disksDir, image: image), $0) }
    }
}
