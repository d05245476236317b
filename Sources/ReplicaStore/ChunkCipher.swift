import Crypto
import Foundation
import ReplicaSystem

/// Encryption at rest, one chunk at a time: AES-256-GCM with a key from a key file, a fresh
/// random nonce per chunk, and the chunk's identity (the object or file it belongs to, its
/// index, and whether it is the last chunk) as associated data. A chunk changed by one bit,
/// moved to another index or object, or an object cut short (its last chunk missing, so the
/// chunk read as last was not sealed as last) fails authentication and is refused, never
/// returned as data. The key never leaves the host that holds the file.
///
/// Key file: exactly 32 random bytes, mode 0600, made with
/// `head -c 32 /dev/urandom > KEY && chmod 600 KEY`.
///
/// Sealed chunk (`overhead` = 37 bytes more than the plaintext):
///
///     offset  size  field
///     0       1     format version, 1
///     1       8     key id: the first 8 bytes of HMAC-SHA256(key, "replicafs key id")
///     9       12    nonce, random per chunk
///     21      n     ciphertext (same length as the plaintext)
///     21+n    16    GCM tag
///
/// Associated data (authenticated, not stored): "replicafs-chunk-v1", the length of the object
/// name in UTF-8 as 4 bytes big-endian, the name, the index as 8 bytes big-endian, 1 byte: 1
/// for the last chunk, else 0.
/// The key id only tells "another key" apart from "tampered" in the error; it is no secret
/// and no check of its own (the tag is). Random 96-bit nonces keep one key safe for 2^32
/// chunks (NIST SP 800-38D): at 1 MiB chunks, 4 PiB per key.
public struct ChunkCipher: Sendable {
    public static let keySize = 32
    public static let version: UInt8 = 1
    static let keyIDSize = 8
    static let nonceSize = 12
    static let tagSize = 16
    static let headerSize = 1 + keyIDSize + nonceSize
    /// Bytes a sealed chunk has beyond its plaintext.
    public static let overhead = headerSize + tagSize

    /// The key's bytes (SymmetricKey is not Sendable in swift-crypto 3); a key is made per call.
    private let keyBytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }
    /// Identifies the key in sealed chunks (see the format above).
    public let keyID: [UInt8]

    public init(key: SymmetricKey) throws {
        guard key.bitCount == Self.keySize * 8 else {
            throw ReplicaError("encryption key has \(key.bitCount / 8) bytes, not \(Self.keySize)", kind: .nonRecoverable, code: .badRequest)
        }
        keyBytes = key.withUnsafeBytes { Array($0) }
        let mac = HMAC<SHA256>.authenticationCode(for: Array("replicafs key id".utf8), using: key)
        keyID = Array(Array(mac).prefix(Self.keyIDSize))
    }

    /// Reads a key file: exactly 32 bytes, readable by its owner only.
    public init(keyFile path: String) throws {
        let st = try FileSystem.stat(path)
        if st.st_mode & 0o077 != 0 {
            throw ReplicaError("key file \(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))): run `chmod 600 \(path)`",
                               kind: .nonRecoverable, code: .badRequest)
        }
        let bytes = try FileSystem.readFile(path)
        guard bytes.count == Self.keySize else {
            throw ReplicaError("key file \(path) holds \(bytes.count) bytes, not \(Self.keySize): make one with"
                + " `head -c 32 /dev/urandom > \(path) && chmod 600 \(path)`", kind: .nonRecoverable, code: .badRequest)
        }
        try self.init(key: SymmetricKey(data: bytes))
    }

    /// A name for `text` that only a holder of the key can compute or link to it
    /// (HMAC-SHA256 under the key, hex): content-addressed objects of an encrypted store are
    /// named by it, so their names do not let a reader of the bucket confirm a guessed content.
    public func keyedName(_ text: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(("replicafs object name:" + text).utf8), using: key)
        return Self.hex(Array(mac))
    }

    /// Encrypts chunk `index` of `object`; `last` marks the object's final chunk.
    public func seal(_ plaintext: [UInt8], object: String, index: UInt64, last: Bool) throws -> [UInt8] {
        let nonce = AES.GCM.Nonce()
        let box = try AES.GCM.seal(plaintext, using: key, nonce: nonce,
                                   authenticating: Self.associatedData(object: object, index: index, last: last))
        var out: [UInt8] = []
        out.reserveCapacity(plaintext.count + Self.overhead)
        out.append(Self.version)
        out += keyID
        nonce.withUnsafeBytes { out += $0 }
        out += box.ciphertext
        out += box.tag
        return out
    }

    /// Decrypts a chunk sealed as chunk `index` of `object` (`last` as sealed); refuses one
    /// that was changed, moved, cut or sealed with another key.
    public func open(_ sealed: [UInt8], object: String, index: UInt64, last: Bool) throws -> [UInt8] {
        let what = "chunk \(index) of \(object)"
        guard sealed.count >= Self.overhead else {
            throw ReplicaError("\(what) is truncated (\(sealed.count) bytes, less than the \(Self.overhead) of an empty sealed chunk)",
                               kind: .nonRecoverable)
        }
        guard sealed[0] == Self.version else {
            throw ReplicaError("\(what) has unknown encryption format \(sealed[0]) (expected \(Self.version))", kind: .nonRecoverable)
        }
        let storedID = Array(sealed[1..<(1 + Self.keyIDSize)])
        guard storedID == keyID else {
            throw ReplicaError("\(what) was encrypted with another key (key id \(Self.hex(storedID)), this key is \(Self.hex(keyID)))",
                               kind: .nonRecoverable)
        }
        do {
            let box = try AES.GCM.SealedBox(
                nonce: try AES.GCM.Nonce(data: sealed[(1 + Self.keyIDSize)..<Self.headerSize]),
                ciphertext: sealed[Self.headerSize..<(sealed.count - Self.tagSize)],
                tag: sealed[(sealed.count - Self.tagSize)...])
            return Array(try AES.GCM.open(box, using: key, authenticating: Self.associatedData(object: object, index: index, last: last)))
        } catch {
            throw ReplicaError("\(what) failed authentication: changed, truncated, or not chunk \(index)\(last ? " (the last)" : "") of \(object)",
                               kind: .nonRecoverable)
        }
    }

    static func associatedData(object: String, index: UInt64, last: Bool) -> [UInt8] {
        let name = Array(object.utf8)
        var data = Array("replicafs-chunk-v1".utf8)
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: name.count).bigEndian) { data += $0 }
        data += name
        withUnsafeBytes(of: index.bigEndian) { data += $0 }
        data.append(last ? 1 : 0)
        return data
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
