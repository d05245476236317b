import Crypto
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// What a reader needs of one stored redo log without downloading it: each record's effect on
/// the disk (where its data lies in the log object) and the log cut into segments of whole
/// records, each with its SHA-256, that a reader fetches by range GET and checks before use.
/// Built once at commit, while the log is verified, and stored beside the log (`<log>.idx`),
/// so opening a point costs its records, never its disk's size.
struct LogIndex: Sendable, Equatable {
    enum Kind: UInt8, Sendable { case write = 1, zero = 2, setSize = 3 }

    struct Record: Sendable, Equatable {
        var kind: Kind
        var diskOffset: Int64
        /// Bytes of the disk the record covers (writes, zeros); 0 for a set-size.
        var length: Int64
        /// Where a write's data starts in the log object.
        var logOffset: Int64
    }

    struct Segment: Sendable, Equatable {
        var logOffset: Int64
        var length: Int64
        var sha256: String
    }

    var records: [Record] = []
    /// Sorted by `logOffset`; every write's data lies wholly in one.
    var segments: [Segment] = []

    static let magic = Array("RFSIDX1\n".utf8)

    /// The segment holding log byte `offset`.
    func segment(containing offset: Int64) -> Segment? {
        var lo = 0, hi = segments.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if segments[mid].logOffset + segments[mid].length <= offset { lo = mid + 1 } else { hi = mid }
        }
        guard lo < segments.count, segments[lo].logOffset <= offset else { return nil }
        return segments[lo]
    }

    // MARK: building from a local log

    /// A verified local log: its scan (every record's checksum checked), its index, SHA-256
    /// and the ETags S3 would give it.
    struct Built {
        var scan: LogScan
        var index: LogIndex
        var size: Int64
        var sha256: String
        var etags: Set<String>
    }

    /// Maps `path`, scans it (the HRL scanner checks every record) and builds its index with
    /// segments of about `segmentSize` bytes; `partSize` is the multipart upload's part size.
    static func build(path: String, segmentSize: Int, partSize: Int) throws -> Built {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        let size = Int(try fd.size())
        guard size >= LogHeader.size else { throw ReplicaError("\(path): not an HRL change log (shorter than its header)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            throw SystemError.current("mmap", path)
        }
        defer { munmap(map, size) }
        _ = madvise(map, size, MADV_SEQUENTIAL)
        let all = UnsafeRawBufferPointer(start: map, count: size)
        var index = LogIndex()
        let scan = try LogScanner.scan(all, path: path) { header, data in
            switch header.type {
            case .write where data.count > 0:
                index.records.append(Record(kind: .write, diskOffset: Int64(header.offset), length: Int64(data.count),
                                            logOffset: Int64(data.baseAddress! - all.baseAddress!)))
            case .zero where header.extent > 0:
                index.records.append(Record(kind: .zero, diskOffset: Int64(header.offset), length: Int64(header.extent), logOffset: 0))
            case .setSize:
                index.records.append(Record(kind: .setSize, diskOffset: Int64(header.offset), length: 0, logOffset: 0))
            default:
                break
            }
        }
        // Segments: consecutive writes' data, cut at record boundaries.
        var start: Int64 = -1, end: Int64 = 0
        func close() {
            guard start >= 0 else { return }
            let bytes = UnsafeRawBufferPointer(rebasing: all[Int(start)..<Int(end)])
            index.segments.append(Segment(logOffset: start, length: end - start, sha256: ObjectDigest.sha256(bytes)))
            start = -1
        }
        for r in index.records where r.kind == .write {
            if start >= 0, r.logOffset + r.length - start > Int64(segmentSize) { close() }
            if start < 0 { start = r.logOffset }
            end = r.logOffset + r.length
        }
        close()
        return Built(scan: scan, index: index, size: Int64(size), sha256: ObjectDigest.sha256(all),
                     etags: ObjectDigest.expectedETags(all, partSize: partSize))
    }

    // MARK: encoding

    func encoded() -> [UInt8] {
        var out = Self.magic
        func put(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        put(UInt64(records.count))
        put(UInt64(segments.count))
        for r in records {
            put(UInt64(r.kind.rawValue))
            put(UInt64(bitPattern: r.diskOffset))
            put(UInt64(bitPattern: r.length))
            put(UInt64(bitPattern: r.logOffset))
        }
        for s in segments {
            put(UInt64(bitPattern: s.logOffset))
            put(UInt64(bitPattern: s.length))
            out += ObjectDigest.sha256Raw(s.sha256) ?? []
        }
        return out
    }

    init() {}

    init(decoding bytes: [UInt8], key: String) throws {
        let bad = ReplicaError("\(key): damaged log index")
        guard bytes.count >= 24, Array(bytes[0..<8]) == Self.magic else { throw bad }
        var at = 8
        func get() throws -> UInt64 {
            guard at + 8 <= bytes.count else { throw bad }
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += 8
            return v
        }
        let nr = try get(), ns = try get()
        guard nr <= UInt64(bytes.count / 32), ns <= UInt64(bytes.count / 48) else { throw bad }
        records.reserveCapacity(Int(nr))
        for _ in 0..<nr {
            guard let kind = Kind(rawValue: UInt8(truncatingIfNeeded: try get())) else { throw bad }
            let off = Int64(bitPattern: try get()), len = Int64(bitPattern: try get()), log = Int64(bitPattern: try get())
            guard off >= 0, len >= 0, log >= 0 else { throw bad }
            records.append(Record(kind: kind, diskOffset: off, length: len, logOffset: log))
        }
        for _ in 0..<ns {
            let off = Int64(bitPattern: try get()), len = Int64(bitPattern: try get())
            guard at + 32 <= bytes.count, off >= 0, len > 0 else { throw bad }
            segments.append(Segment(logOffset: off, length: len, sha256: ObjectDigest.hex(bytes[at..<(at + 32)])))
            at += 32
        }
        guard at == bytes.count else { throw bad }
    }
}
