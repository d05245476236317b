import ReplicaLog
#if canImport(Glibc)
import Glibc
#endif

/// What an image must hold after a chain of logs is applied, computed in memory from the
/// records alone: the oracle the applier and the store's export are checked against.
public struct ImageModel {
    /// Model only images this small (1 MiB keeps an execution fast); larger offsets are
    /// applied but not compared.
    public static let maxBytes = 1 << 20
    public private(set) var bytes: [UInt8]
    /// False once a record reaches past `maxBytes`: the model no longer says anything.
    public private(set) var valid = true

    public init(_ initial: [UInt8]) { bytes = initial }

    public mutating func apply(_ h: RecordHeader, _ data: UnsafeRawBufferPointer) {
        guard valid else { return }
        switch h.type {
        case .write:
            guard h.offset + h.extent <= UInt64(Self.maxBytes) else { valid = false; return }
            guard !data.isEmpty else { return }
            let start = Int(h.offset), end = start + data.count
            if end > bytes.count { grow(to: end) }
            // Raw copies: the generic collection calls run element by element in a debug build.
            bytes.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<end]).copyMemory(from: data) }
        case .setSize:
            guard h.offset <= UInt64(Self.maxBytes) else { valid = false; return }
            let size = Int(h.offset)
            if size < bytes.count { bytes.removeLast(bytes.count - size) } else { grow(to: size) }
        case .zero:
            guard h.offset < UInt64(bytes.count) else { return }
            let start = Int(h.offset), end = Int(min(h.offset + h.extent, UInt64(bytes.count)))
            bytes.withUnsafeMutableBytes { _ = memset($0.baseAddress! + start, 0, end - start) }
        case .marker, .seal:
            break
        }
    }

    private mutating func grow(to size: Int) {
        bytes += [UInt8](repeating: 0, count: size - bytes.count)
    }
}
