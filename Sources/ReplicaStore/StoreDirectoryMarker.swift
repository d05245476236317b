import Foundation
import ReplicaSystem

/// The file that marks a store directory whose contents are encrypted at rest
/// (`DIR/replicafs-store.json`, docs/secondary-site.md "Encryption at rest"): its layout and
/// the id of the key it was made with, never the key. A plain `DirectoryStore` has none, so
/// `openTargetStore` tells the two apart before touching anything, and an encrypted store
/// opened without its key (or with another) fails with one line, nothing written.
public struct StoreDirectoryMarker: Codable, Sendable, Equatable {
    public static let fileName = "replicafs-store.json"
    /// An `ObjectStore` over sealed objects in `DIR/objects`.
    public static let sealedObjects = "sealed-objects"
    public static let currentVersion = 1

    public var format: String
    public var version: Int
    /// Hex of `ChunkCipher.keyID`: tells "another key" apart, reveals nothing of the key.
    public var keyID: String

    public init(format: String = StoreDirectoryMarker.sealedObjects, version: Int = StoreDirectoryMarker.currentVersion, keyID: String) {
        self.format = format
        self.version = version
        self.keyID = keyID
    }

    public static func path(_ directory: String) -> String { directory + "/" + fileName }

    /// The marker of `directory`; nil when it has none (a plain store, or no store yet).
    public static func read(_ directory: String) throws -> StoreDirectoryMarker? {
        let p = path(directory)
        guard FileSystem.exists(p) else { return nil }
        let marker: StoreDirectoryMarker
        do {
            marker = try JSONDecoder().decode(StoreDirectoryMarker.self, from: Data(try FileSystem.readFile(p)))
        } catch {
            throw ReplicaError("\(p): unreadable store marker (\(error))", kind: .nonRecoverable)
        }
        guard marker.format == sealedObjects, marker.version == currentVersion else {
            throw ReplicaError("\(p): store format \(marker.format) version \(marker.version) is not one this replicafs knows (\(sealedObjects) \(currentVersion))",
                               kind: .nonRecoverable)
        }
        return marker
    }

    /// Writes the marker durably (replaced whole).
    public func write(to directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(Self.path(directory), $0, mode: 0o644) }
    }
}
