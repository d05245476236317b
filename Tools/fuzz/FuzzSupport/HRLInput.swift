import ReplicaLog

/// Turns fuzzer bytes into change logs. Random bytes almost never pass a CRC-32C, so most
/// inputs are "repaired" first: the first byte holds flags saying which fields the harness
/// fixes (magic and checksums, LSNs and sequence numbers, the links between logs of a chain,
/// seal and marker payloads, small ranges); everything else stays as the fuzzer made it. With
/// the first bit clear the rest of the input is one log taken as is, so the checksum paths
/// themselves are fuzzed too. Repaired inputs may hold several logs back to back: a log ends
/// after its seal record.
public enum HRLInput {
    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let checksums = Flags(rawValue: 1)
        public static let lsns = Flags(rawValue: 2)
        public static let chain = Flags(rawValue: 4)
        public static let payloads = Flags(rawValue: 8)
        public static let smallRanges = Flags(rawValue: 16)
    }

    /// At most this many logs per input: enough for every chain check (gap, repeat, link).
    public static let maxLogs = 4

    /// The logs an input holds (see the type's comment); the first is empty only for an empty input.
    public static func logs(_ input: UnsafeRawBufferPointer) -> [[UInt8]] {
        guard let first = input.first else { return [] }
        let flags = Flags(rawValue: first)
        var bytes = Array(input.dropFirst())
        guard flags.contains(.checksums) else { return [bytes] }
        var logs: [[UInt8]] = []
        var start = 0
        var previous: (chain: [UInt8], sequence: UInt64, nextLSN: UInt64)?
        while start < bytes.count, logs.count < maxLogs {
            let (end, link) = repair(&bytes, at: start, flags: flags, after: previous)
            let stop = logs.count == maxLogs - 1 ? bytes.count : end
            logs.append(Array(bytes[start..<stop]))
            previous = link
            start = stop
        }
        return logs
    }

    /// The input a log (or several) would be repaired from: the seed corpus is written with this.
    public static func encode(_ logs: [[UInt8]], flags: Flags) -> [UInt8] {
        [flags.rawValue] + logs.joined()
    }

    static func get<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _: T.Type) -> T {
        var v = T.zero
        for i in 0..<MemoryLayout<T>.size { v |= T(b[at + i]) << (8 * i) }
        return v
    }

    static func put<T: FixedWidthInteger>(_ b: inout [UInt8], _ at: Int, _ value: T) {
        for i in 0..<MemoryLayout<T>.size { b[at + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    static func crc(_ b: [UInt8], _ range: Range<Int>) -> UInt32 {
        b.withUnsafeBytes { Checksum.crc32c(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// Repairs the log starting at `s`; returns where it ends (after its seal, or the input's end)
    /// and what the next log of the chain must continue.
    static func repair(_ b: inout [UInt8], at s: Int, flags: Flags,
                       after previous: (chain: [UInt8], sequence: UInt64, nextLSN: UInt64)?)
        -> (Int, (chain: [UInt8], sequence: UInt64, nextLSN: UInt64)?) {
        guard b.count - s >= LogHeader.size else { return (b.count, nil) }
        for (i, m) in LogHeader.magic.enumerated() { b[s + i] = m }
        put(&b, s + 8, LogHeader.currentVersion)
        put(&b, s + 10, UInt16(LogHeader.size))
        var nameLength = Int(get(b, s + 64, UInt16.self))
        if nameLength == 0 || nameLength > LogHeader.maxNameBytes {
            nameLength = 1 + nameLength % 16
            put(&b, s + 64, UInt16(nameLength))
        }
        if String(validating: b[(s + 66)..<(s + 66 + nameLength)], as: UTF8.self) == nil {
            for i in 0..<nameLength { b[s + 66 + i] = 0x61 + b[s + 66 + i] % 26 }
        }
        var sequence = get(b, s + 16, UInt64.self)
        var lsn = get(b, s + 24, UInt64.self)
        if flags.contains(.lsns) {
            if sequence == 0 || sequence > LogLimits.maxCounter { sequence = 1 + sequence % 1000 }
            if lsn == 0 || lsn > LogLimits.maxCounter { lsn = 1 + lsn % 100_000 }
            if get(b, s + 40, UInt64.self) > LogLimits.maxImageBytes { put(&b, s + 40, get(b, s + 40, UInt64.self) % (1 << 20)) }
        }
        if flags.contains(.chain), let previous {
            for i in 0..<16 { b[s + 48 + i] = previous.chain[i] }
            sequence = previous.sequence + 1
            lsn = previous.nextLSN
        }
        put(&b, s + 16, sequence)
        put(&b, s + 24, lsn)
        put(&b, s + 508, crc(b, s..<(s + 508)))
        let chain = Array(b[(s + 48)..<(s + 64)])
        var p = s + LogHeader.size
        var count: UInt64 = 0
        var dataBytes: UInt64 = 0
        while b.count - p >= RecordHeader.size {
            put(&b, p, RecordHeader.magic)
            let type = RecordType(rawValue: 1 + b[p + 4] % 5)!
            b[p + 4] = type.rawValue
            let available = b.count - p - RecordHeader.size
            var length = Int(get(b, p + 32, UInt32.self))
            switch type {
            case .write:
                length = min(length % 65_537, available)
                put(&b, p + 24, UInt64(length))
            case .setSize, .zero:
                length = 0
            case .marker:
                length = max(24, length % 1_025)
                if length > available { length = available }
            case .seal:
                length = Int(Seal.size)
            }
            if length > available || (type == .marker && length < 24) { break }
            put(&b, p + 32, UInt32(length))
            if flags.contains(.lsns) { put(&b, p + 8, lsn) }
            if flags.contains(.smallRanges), type != .marker, type != .seal {
                put(&b, p + 16, get(b, p + 16, UInt64.self) % (1 << 20))
                if type == .zero { put(&b, p + 24, get(b, p + 24, UInt64.self) % (1 << 18)) }
            }
            let data = p + RecordHeader.size
            if flags.contains(.payloads) {
                if type == .marker {
                    put(&b, data, UInt16(1 + get(b, data, UInt16.self) % 4))
                    put(&b, data + 8, get(b, data + 8, UInt64.self) % 1_000)
                }
                if type == .seal {
                    b[data] = 1 + b[data] % 3
                    put(&b, data + 8, get(b, data + 8, UInt64.self) % 1_000)
                    put(&b, data + 16, count)
                    put(&b, data + 24, dataBytes)
                }
            }
            put(&b, p + 36, crc(b, data..<(data + length)))
            put(&b, p + 44, crc(b, p..<(p + 44)))
            p = data + length
            lsn &+= 1
            if type == .write { dataBytes &+= UInt64(length) }
            if type == .seal { return (p, (chain, sequence, lsn)) }
            count += 1
        }
        return (b.count, nil)
    }
}
