import ReplicaLog
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The bytes a disk holds at a recovery point where they differ from the store's base: an
/// extent map into the memory-mapped redo logs of every point after the base up to the chosen
/// one. Each byte comes from the last change that touched it; zeroed ranges, and everything
/// above a size a log cut the disk to, read as zeros. A failover or drill reads through this
/// map instead of copying the disk, so opening one costs the changes since the base, never the
/// disk's size. Mapped logs stay readable after a merge deletes their files.
/// Opening reads only the record headers (each checked): a write record's data is checked
/// against its checksum when it is first read, so opening costs the number of changes, not
/// the bytes changed, and a damaged record still never reads as good data (EIO instead).
// @unchecked: immutable after init but for its mappings and `verified` (a Mutex), read from
// FUSE worker threads.
final class RedoOverlay: @unchecked Sendable {
    struct Extent: SweptExtent {
        public var start: Int64
        var end: Int64
        /// The bytes of `start..<end`; nil where the range reads as zeros.
        var bytes: UnsafeRawPointer?
        /// The write record the bytes come from (an index into `records`); -1 for zeros.
        var record: Int = -1

        func piece(from at: Int64, to: Int64) -> Extent {
            Extent(start: at, end: to, bytes: bytes.map { $0 + Int(at - start) }, record: record)
        }

        func continues(into next: Extent) -> Bool {
            record == next.record && bytes.map { $0 + Int(next.start - start) } == next.bytes
        }
    }

    /// A write record's data in a mapped log, with the checksum it must match.
    private struct Record {
        var data: UnsafeRawPointer
        var count: Int
        var crc: UInt32
        var path: String
        var offset: UInt64
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent] = []
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []
    private var records: [Record] = []
    /// The records whose data has been checked against its checksum.
    private let verified = Mutex<Set<Int>>([])

    /// Maps `logs` (oldest first, each sealed and undamaged) and builds the map.
    init(logs: [String]) throws {
        var changes: [Extent] = []
        do {
            for path in logs { changes += try map(path) }
        } catch {
            for (p, n) in mappings { munmap(p, n) }
            throw error
        }
        extents = Self.lastWriterWins(changes)
    }

    deinit { for (p, n) in mappings { munmap(p, n) } }

    var bytesMapped: Int { mappings.reduce(0) { $0 + $1.1 } }

    /// Maps one log; returns each record's effect, in log order.
    private func map(_ path: String) throws -> [Extent] {
        var changes: [Extent] = []
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        let size = Int(try fd.stat().st_size)
        guard size >= LogHeader.size else { throw ReplicaError("\(path): damaged redo log (shorter than its header)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            throw SystemError.current("mmap", path)
        }
        mappings.append((map, size))
        var found: [Record] = []
        let first = records.count
        let scan = try LogScanner.scan(UnsafeRawBufferPointer(start: map, count: size), path: path, verifyWriteData: false) { header, data in
            switch header.type {
            case .write where data.count > 0:
                found.append(Record(data: data.baseAddress!, count: data.count, crc: header.dataCRC, path: path, offset: header.offset))
                changes.append(Extent(start: Int64(header.offset), end: Int64(header.offset) + Int64(data.count), bytes: data.baseAddress,
                                      record: first + found.count - 1))
            case .zero where header.extent > 0:
                changes.append(Extent(start: Int64(header.offset), end: Int64(header.offset + header.extent), bytes: nil))
            case .setSize:
                // Bytes past a cut read as zeros, even if a later change grows the disk again.
                changes.append(Extent(start: Int64(header.offset), end: Int64.max, bytes: nil))
            default:
                break
            }
        }
        guard scan.isSealed, scan.tail == .clean else { throw ReplicaError("\(path): damaged redo log (\(scan.tail))") }
        records += found
        return changes
    }

    /// Cuts overlapping changes (given oldest first) into disjoint extents, each taken from the
    /// newest change covering it: a sweep over the boundaries with a heap of the changes open there.
    static func lastWriterWins(_ changes: [Extent]) -> [Extent] {
        LastWriterWins.sweep(changes)
    }

    /// Checks record `index`'s data against its checksum once (racing readers may both check).
    private func verify(_ index: Int) throws {
        guard index >= 0, !verified.withLock({ $0.contains(index) }) else { return }
        let r = records[index]
        guard Checksum.crc32c(UnsafeRawBufferPointer(start: r.data, count: r.count)) == r.crc else {
            throw ReplicaError("\(r.path): damaged redo log (the data of the write at disk offset \(r.offset) fails its checksum)")
        }
        _ = verified.withLock { $0.insert(index) }
    }

    /// Index of the first extent whose end lies after `offset`.
    private func firstIndex(endingAfter offset: Int64) -> Int {
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].end <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Copies the overlay's bytes of `offset..<offset+count` over `buffer` (which holds the
    /// base's bytes of that range); ranges no change touched are left as they are.
    /// Throws when a record read for the first time fails its checksum.
    func overlay(_ buffer: UnsafeMutableRawPointer, offset: Int64, count: Int) throws {
        let end = offset + Int64(count)
        var i = firstIndex(endingAfter: offset)
        while i < extents.count, extents[i].start < end {
            let e = extents[i]
            let from = max(e.start, offset), to = min(e.end, end)
            if let bytes = e.bytes {
                try verify(e.record)
                memcpy(buffer + Int(from - offset), bytes + Int(from - e.start), Int(to - from))
            } else {
                memset(buffer + Int(from - offset), 0, Int(to - from))
            }
            i += 1
        }
    }
}
