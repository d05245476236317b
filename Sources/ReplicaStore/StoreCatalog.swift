import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The target store's record of one VM: its disks, how far each disk's log chain has been
/// received, which point the base disks hold, and its recovery points. Saved as JSON by write, fsync and rename, so a crash
/// leaves either the old or the new catalog, never a mix.
public struct StoreCatalog: Codable, Sendable {
    public struct Disk: Codable, Sendable {
        public var name: String
        /// Hex chain id of the source logs received so far (nil until the first delta).
        public var chain: String?
        /// LSN the next shipped log must start at (nil until the first delta).
        public var nextLSN: UInt64?
        /// The disk's size as of the newest change the store holds (the latest point, or a
        /// finished resync after it); nil in catalogs that predate it: the base's size then.
        public var size: Int64?
    }

    public var vm: String
    public var disks: [Disk]
    public var points: [RecoveryPoint]
    public var nextPointID: Int
    /// The point whose state the base disks hold (0: the initial copy). Every later point is
    /// the base with the redo logs of the points after it up to that one applied in order.
    public var baseThrough: Int?
    /// Set while a resync has left the replica at no recovery point (TargetStore+Resync.swift).
    public var resync: Resync?

    public init(vm: String, disks: [String]) {
        self.vm = vm
        self.disks = disks.map { Disk(name: $0, chain: nil, nextLSN: nil, size: nil) }
        self.points = []
        self.nextPointID = 1
    }

    public static func load(_ path: String) throws -> StoreCatalog {
        let bytes = try FileSystem.readFile(path)
        do {
            return try JSONDecoder().decode(StoreCatalog.self, from: Data(bytes))
        } catch {
            throw ReplicaError("\(path): unreadable catalog (\(error))", kind: .nonRecoverable)
        }
    }

    public func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }
}
