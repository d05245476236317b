import Crypto
import Foundation

/// SHA-256 over bytes that arrive in pieces, as hex (reading an object back).
struct SHA256Stream {
    private var hasher = SHA256()

    mutating func update(_ bytes: [UInt8]) { hasher.update(data: bytes) }
    mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    func finalize() -> String { ObjectDigest.hex(hasher.finalize()) }
}
