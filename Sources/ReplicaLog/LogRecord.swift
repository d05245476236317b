import ReplicaSystem
/// What a record in an HRL change log means.
public enum RecordType: UInt8, Sendable, CustomStringConvertible {
    /// `data` was written at `offset`.
    case write = 1
    /// The image's size became `offset` (truncate, or fallocate growing the file).
    case setSize = 2
    /// `extent` bytes at `offset` now read as zeros (punch hole, zero range, discard).
    case zero = 3
    /// A marker (cut, app-consistent point, shutdown note); payload is a `Marker`.
    case marker = 4
    /// The last record of a sealed log; payload is a `Seal`.
    case seal = 5

    public var description: String {
        switch self {
        case .write: "write"
        case .setSize: "set-size"
        case .zero: "zero"
        case .marker: "marker"
        case .seal: "seal"
        }
    }
}

/// The 48-byte header in front of every record's data (see docs/hrl-format.md).
public struct RecordHeader: Equatable, Sendable {
    public static let size = 48
    public static let magic: UInt32 = 0x524C_5248 // "HRLR" read little-endian
    /// Largest data payload a record may carry; anything larger is treated as corruption.
    public static let maxDataLength = 16 << 20

    public var type: RecordType
    public var lsn: UInt64
    public var offset: UInt64
    public var extent: UInt64
    public var dataLength: UInt32
    public var dataCRC: UInt32

    public init(type: RecordType, lsn: UInt64, offset: UInt64, extent: UInt64, dataLength: UInt32, dataCRC: UInt32) {
        self.type = type
        self.lsn = lsn
        self.offset = offset
        self.extent = extent
        self.dataLength = dataLength
        self.dataCRC = dataCRC
    }

    /// Encodes into `out`, which must hold `size` bytes. Allocation-free: this runs on the write path.
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        out.storeBytes(of: RecordHeader.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: type.rawValue, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: UInt8(0), toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        out.storeBytes(of: lsn.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: offset.littleEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: extent.littleEndian, toByteOffset: 24, as: UInt64.self)
        out.storeBytes(of: dataLength.littleEndian, toByteOffset: 32, as: UInt32.self)
        out.storeBytes(of: dataCRC.littleEndian, toByteOffset: 36, as: UInt32.self)
        out.storeBytes(of: UInt32(0), toByteOffset: 40, as: UInt32.self)
        let crc = Checksum.crc32c(UnsafeRawBufferPointer(rebasing: out[0..<44]))
        out.storeBytes(of: crc.littleEndian, toByteOffset: 44, as: UInt32.self)
    }

    public func encode() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: RecordHeader.size)
        bytes.withUnsafeMutableBytes { encode(into: $0) }
        return bytes
    }

    /// Why a header failed to decode.
    public enum DecodeFailure: Error { case badMagic, badChecksum, badType, badLength }

    /// Decodes and verifies a 48-byte record header.
    public static func decode(_ raw: UnsafeRawBufferPointer) throws(DecodeFailure) -> RecordHeader {
        let r = ByteReader(bytes: raw)
        guard r.get(UInt32.self, at: 0) == magic else { throw .badMagic }
        guard r.get(UInt32.self, at: 44) == Checksum.crc32c(UnsafeRawBufferPointer(rebasing: raw[0..<44])) else {
            throw .badChecksum
        }
        guard let type = RecordType(rawValue: r.get(UInt8.self, at: 4)) else { throw .badType }
        let length = r.get(UInt32.self, at: 32)
        guard length <= UInt32(maxDataLength) else { throw .badLength }
        let header = RecordHeader(type: type, lsn: r.get(UInt64.self, at: 8), offset: r.get(UInt64.self, at: 16),
                                  extent: r.get(UInt64.self, at: 24), dataLength: length,
                                  dataCRC: r.get(UInt32.self, at: 36))
        switch type {
        case .write: guard header.extent == UInt64(length) else { throw .badLength }
        case .setSize, .zero: guard length == 0 else { throw .badLength }
        case .marker: guard length >= Marker.fixedSize else { throw .badLength }
        case .seal: guard length == Seal.size else { throw .badLength }
        }
        return header
    }
}

/// A point of note inside a log: a rotation cut, an app-consistent point, a shutdown.
public struct Marker: Equatable, Sendable {
    public enum Kind: UInt16, Sendable, CustomStringConvertible {
        case cut = 1
        case appConsistent = 2
        case cleanShutdown = 3
        case uncleanShutdown = 4

        public var description: String {
            switch self {
            case .cut: "cut"
            case .appConsistent: "app-consistent"
            case .cleanShutdown: "clean-shutdown"
            case .uncleanShutdown: "unclean-shutdown"
            }
        }
    }

    static let fixedSize: UInt32 = 24

    public var kind: Kind
    public var cutID: UInt64
    public var timeNanos: UInt64
    public var label: String

    public init(kind: Kind, cutID: UInt64, timeNanos: UInt64, label: String = "") {
        self.kind = kind
        self.cutID = cutID
        self.timeNanos = timeNanos
        self.label = label
    }

    public func encode() -> [UInt8] {
        let labelBytes = Array(label.utf8.prefix(1024))
        var w = ByteWriter(capacity: Int(Marker.fixedSize) + labelBytes.count)
        w.put(kind.rawValue, at: 0)
        w.put(cutID, at: 8)
        w.put(timeNanos, at: 16)
        w.put(labelBytes, at: 24)
        return w.bytes
    }

    public static func decode(_ raw: UnsafeRawBufferPointer) -> Marker? {
        let r = ByteReader(bytes: raw)
        guard raw.count >= Int(fixedSize), let kind = Kind(rawValue: r.get(UInt16.self, at: 0)) else { return nil }
        let label = String(decoding: r.slice(24, raw.count - 24), as: UTF8.self)
        return Marker(kind: kind, cutID: r.get(UInt64.self, at: 8), timeNanos: r.get(UInt64.self, at: 16), label: label)
    }
}

/// The payload of a log's closing record: why it was sealed and what it holds.
public struct Seal: Equatable, Sendable {
    public enum Reason: UInt8, Sendable, CustomStringConvertible {
        case rotation = 1
        case cleanShutdown = 2
        case recovered = 3

        public var description: String {
            switch self {
            case .rotation: "rotation"
            case .cleanShutdown: "clean-shutdown"
            case .recovered: "recovered-after-crash"
            }
        }
    }

    public static let size: UInt32 = 40

    public var reason: Reason
    public var cutID: UInt64
    /// Records before the seal record.
    public var recordCount: UInt64
    /// Bytes of write data before the seal record.
    public var dataBytes: UInt64
    public var timeNanos: UInt64

    public init(reason: Reason, cutID: UInt64, recordCount: UInt64, dataBytes: UInt64, timeNanos: UInt64) {
        self.reason = reason
        self.cutID = cutID
        self.recordCount = recordCount
        self.dataBytes = dataBytes
        self.timeNanos = timeNanos
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: Int(Seal.size))
        w.put(reason.rawValue, at: 0)
        w.put(cutID, at: 8)
        w.put(recordCount, at: 16)
        w.put(dataBytes, at: 24)
        w.put(timeNanos, at: 32)
        return w.bytes
    }

    public static func decode(_ raw: UnsafeRawBufferPointer) -> Seal? {
        let r = ByteReader(bytes: raw)
        guard raw.count == Int(size), let reason = Reason(rawValue: r.get(UInt8.self, at: 0)) else { return nil }
        return Seal(reason: reason, cutID: r.get(UInt64.self, at: 8), recordCount: r.get(UInt64.self, at: 16),
                    dataBytes: r.get(UInt64.self, at: 24), timeNanos: r.get(UInt64.self, at: 32))
    }
}
