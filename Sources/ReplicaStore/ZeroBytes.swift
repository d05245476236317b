/// Tells whether a buffer holds only zero bytes, eight at a time: how copies and uploads
/// decide that a chunk is a hole and need not be written or sent.
public enum ZeroBytes {
    public static func all(_ buffer: UnsafeRawPointer, _ count: Int) -> Bool {
        var i = 0
        while i + 8 <= count {
            if buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < count {
            if buffer.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
            i += 1
        }
        return true
    }
}
