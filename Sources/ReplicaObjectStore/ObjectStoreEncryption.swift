import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization

/// Whether an object store is encrypted, and with which key: the marker object
/// `encryption.json` at the store's prefix (format, cipher, chunk size, key id; no secret),
/// written in the clear when a store is first opened with a key and holds nothing yet. Every
/// open compares the marker with the key given, so a store is never written half sealed and
/// half plain, nor read with the wrong key: an encrypted store opened without a key, a plain
/// store opened with one, and another key each fail with one line before anything is written.
public enum ObjectStoreEncryption {
    public static let markerKey = "encryption.json"

    /// What the marker holds.
    public struct Marker: Codable, Sendable, Equatable {
        public var format: Int
        public var cipher: String
        /// Plaintext bytes per sealed chunk.
        public var chunkSize: Int
        /// The key's id (`ChunkCipher.keyID` in hex): tells keys apart, reveals nothing of the key.
        public var keyID: String
    }

    /// Stores verified in this process (bucket location and key id → the sealed chunk size, 0
    /// for plain): the daemon opens a VM's store on every pass and need not ask again.
    private static let verified = Mutex<[String: Int]>([:])

    /// The bucket an `ObjectStore` over `bucket` runs on: `bucket` itself when the store is
    /// plain and no key is given, a `SealedBucket` over it when the store is encrypted with the
    /// key of `cipher` (read from `keyFile`, named in errors). `target` names the store in
    /// errors; sealed uploads are staged in `stagingDirectory`.
    public static func bucket(_ bucket: any ObjectBucket, target: String, cipher: ChunkCipher?, keyFile: String?,
                              stagingDirectory: String) throws -> any ObjectBucket {
        let keyHex = cipher.map { ObjectDigest.hex($0.keyID) } ?? "-"
        let cacheKey = bucket.location + "|" + keyHex
        if let chunkSize = verified.withLock({ $0[cacheKey] }) {
            return wrap(bucket, cipher: cipher, chunkSize: chunkSize, stagingDirectory: stagingDirectory)
        }
        let chunkSize = try check(bucket, target: target, cipher: cipher, keyFile: keyFile ?? "the key file")
        verified.withLock { $0[cacheKey] = chunkSize }
        return wrap(bucket, cipher: cipher, chunkSize: chunkSize, stagingDirectory: stagingDirectory)
    }

    private static func wrap(_ bucket: any ObjectBucket, cipher: ChunkCipher?, chunkSize: Int, stagingDirectory: String) -> any ObjectBucket {
        guard let cipher else { return bucket }
        return SealedBucket(bucket, cipher: cipher, chunkSize: chunkSize, stagingDirectory: stagingDirectory)
    }

    /// Compares the store's marker with the key; writes the marker into an empty store opened
    /// with a key. Returns the sealed chunk size (0: plain).
    static func check(_ bucket: any ObjectBucket, target: String, cipher: ChunkCipher?, keyFile: String) throws -> Int {
        for _ in 0..<3 {
            if let bytes = try bucket.get(markerKey, range: nil) {
                let marker = try decode(bytes, target: target)
                guard let cipher else {
                    throw ReplicaError("target store \(target) is encrypted (key id \(marker.keyID)): give --encrypt-key-file with its key file",
                                       kind: .nonRecoverable, code: .badRequest)
                }
                let mine = ObjectDigest.hex(cipher.keyID)
                guard marker.keyID == mine else {
                    throw ReplicaError("target store \(target) is encrypted with another key (key id \(marker.keyID); \(keyFile) has key id \(mine))",
                                       kind: .nonRecoverable, code: .badRequest)
                }
                return marker.chunkSize
            }
            guard let cipher else { return 0 }
            if let some = try bucket.list(prefix: "").first {
                throw ReplicaError("target store \(target) is not encrypted (it holds \(some.key) and no \(markerKey)): "
                                   + "--encrypt-key-file applies only to a new store; encrypt another prefix", kind: .nonRecoverable, code: .badRequest)
            }
            let marker = Marker(format: 1, cipher: "AES-256-GCM", chunkSize: 1 << 20, keyID: ObjectDigest.hex(cipher.keyID))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                try bucket.put(markerKey, Array(try encoder.encode(marker)), condition: .ifAbsent)
                return marker.chunkSize
            } catch let error as ReplicaError where error.code == .preconditionFailed {
                continue  // another writer marked it first: read its marker
            }
        }
        throw ReplicaError("\(markerKey) of target store \(target) keeps changing", kind: .recoverable)
    }

    static func decode(_ bytes: [UInt8], target: String) throws -> Marker {
        let marker: Marker
        do {
            marker = try JSONDecoder().decode(Marker.self, from: Data(bytes))
        } catch {
            throw ReplicaError("\(markerKey) of target store \(target) is unreadable: not an encryption marker", kind: .nonRecoverable)
        }
        guard marker.format == 1, marker.cipher == "AES-256-GCM", marker.chunkSize >= 4096, marker.chunkSize <= 64 << 20 else {
            throw ReplicaError("\(markerKey) of target store \(target) names format \(marker.format), \(marker.cipher), chunks of \(marker.chunkSize) bytes:"
                               + " this replicafs reads format 1, AES-256-GCM", kind: .nonRecoverable)
        }
        return marker
    }
}
