import ReplicaSystem
/// The fixed 512-byte header at the start of every HRL change log (see docs/hrl-format.md).
public struct LogHeader: Equatable, Sendable {
    public static let size = 512
    public static let magic: [UInt8] = Array("RFSHRL\r\n".utf8)
    public static let currentVersion: UInt16 = 1
    public static let maxNameBytes = 400

    /// The image this log belongs to (its file name in disks-dir).
    public var imageName: String
    /// 16 random bytes shared by every log of one image's unbroken chain; tells foreign logs apart.
    public var chainID: [UInt8]
    /// Position of this log in the chain: 1, 2, 3, ...
    public var sequence: UInt64
    /// Log sequence number of the first record in this log; continues across logs.
    public var firstLSN: UInt64
    public var createdNanos: UInt64
    /// The image's size when the log was opened.
    public var imageSize: UInt64

    public init(imageName: String, chainID: [UInt8], sequence: UInt64, firstLSN: UInt64,
                createdNanos: UInt64, imageSize: UInt64) {
        self.imageName = imageName
        self.chainID = chainID
        self.sequence = sequence
        self.firstLSN = firstLSN
        self.createdNanos = createdNanos
        self.imageSize = imageSize
    }

    /// A new random chain id: a log chain that starts anew (first mount, reverse replication).
    public static func newChainID() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    public var chainHex: String { chainID.map { String($0, radix: 16).leftPadded(2) }.joined() }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: LogHeader.size)
        w.put(LogHeader.magic, at: 0)
        w.put(LogHeader.currentVersion, at: 8)
        w.put(UInt16(LogHeader.size), at: 10)
        w.put(UInt32(0), at: 12) // flags, reserved
        w.put(sequence, at: 16)
        w.put(firstLSN, at: 24)
        w.put(createdNanos, at: 32)
        w.put(imageSize, at: 40)
        w.put(chainID, at: 48)
        let name = Array(imageName.utf8.prefix(LogHeader.maxNameBytes))
        w.put(UInt16(name.count), at: 64)
        w.put(name, at: 66)
        let crc = w.bytes.withUnsafeBytes { Checksum.crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<508])) }
        w.put(crc, at: 508)
        return w.bytes
    }

    /// Decodes and verifies a header; throws a ReplicaError naming `path` when it is not a valid HRL header.
    public static func decode(_ raw: UnsafeRawBufferPointer, path: String) throws -> LogHeader {
        guard raw.count >= size else {
            throw ReplicaError("\(path): not an HRL change log (file shorter than its 512-byte header)")
        }
        let r = ByteReader(bytes: raw)
        guard r.slice(0, 8) == magic else {
            throw ReplicaError("\(path): not an HRL change log (bad magic)")
        }
        let version = r.get(UInt16.self, at: 8)
        guard version == currentVersion, r.get(UInt16.self, at: 10) == UInt16(size) else {
            throw ReplicaError("\(path): unsupported HRL version \(version)")
        }
        let stored = r.get(UInt32.self, at: 508)
        let computed = Checksum.crc32c(UnsafeRawBufferPointer(rebasing: raw[0..<508]))
        guard stored == computed else {
            throw ReplicaError("\(path): corrupt HRL header (checksum mismatch)")
        }
        let nameLength = Int(r.get(UInt16.self, at: 64))
        guard nameLength > 0, nameLength <= maxNameBytes,
              let name = String(validating: r.slice(66, nameLength), as: UTF8.self) else {
            throw ReplicaError("\(path): corrupt HRL header (bad image name)")
        }
        let header = LogHeader(imageName: name, chainID: r.slice(48, 16), sequence: r.get(UInt64.self, at: 16),
                               firstLSN: r.get(UInt64.self, at: 24), createdNanos: r.get(UInt64.self, at: 32),
                               imageSize: r.get(UInt64.self, at: 40))
        // Valid checksums around absurd numbers: a crafted header, refused before any arithmetic.
        guard header.sequence >= 1, header.sequence <= LogLimits.maxCounter else {
            throw ReplicaError("\(path): corrupt HRL header (sequence \(header.sequence) out of range 1...\(LogLimits.maxCounter))")
        }
        guard header.firstLSN >= 1, header.firstLSN <= LogLimits.maxCounter else {
            throw ReplicaError("\(path): corrupt HRL header (first LSN \(header.firstLSN) out of range 1...\(LogLimits.maxCounter))")
        }
        guard header.imageSize <= LogLimits.maxImageBytes else {
            throw ReplicaError("\(path): corrupt HRL header (image size \(header.imageSize) beyond \(LogLimits.maxImageBytes))")
        }
        return header
    }
}
