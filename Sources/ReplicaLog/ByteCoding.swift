/// Little-endian encoding into a fixed byte buffer, for HRL headers and records.
struct ByteWriter {
    public var bytes: [UInt8]

    init(capacity: Int) { bytes = [UInt8](repeating: 0, count: capacity) }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { raw in
            for i in 0..<raw.count { bytes[offset + i] = raw[i] }
        }
    }

    mutating func put(_ raw: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + raw.count), with: raw)
    }
}

/// Little-endian decoding from a byte buffer; callers check lengths first.
struct ByteReader {
    public let bytes: UnsafeRawBufferPointer

    func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v = T.zero
        withUnsafeMutableBytes(of: &v) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + MemoryLayout<T>.size)]))
        }
        return T(littleEndian: v)
    }

    func slice(_ offset: Int, _ count: Int) -> [UInt8] {
        Array(bytes[offset..<(offset + count)])
    }
}
