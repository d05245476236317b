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
///
/// Memory: the map is built in batches (`LastWriterWinsMap`), so however many records the
/// window holds, the heap holds the disjoint extents (each naming its record's data and
/// checksum, 40 bytes; at most one per smallest write the disk's size holds) plus one batch
/// of at least 262,144 records and the records of one log (logs rotate at a bounded size);
/// the logs' pages are mapped, not copied (they count as resident only while cached, and the
/// kernel can drop them).
// @unchecked: immutable after init but for its mappings and `verified` (a Mutex), read from
// FUSE worker threads.
final class RedoOverlay: @unchecked Sendable {
    struct Extent: SweptExtent {
        public var start: Int64
        var end: Int64
        /// The bytes of `start..<end`; nil where the range reads as zeros.
        var bytes: UnsafeRawPointer?
        /// The write record the bytes come from; nil for zeros.
        var record: Record? = nil

        func piece(from at: Int64, to: Int64) -> Extent {
            Extent(start: at, end: to, bytes: bytes.map { $0 + Int(at - start) }, record: record)
        }

        func continues(into next: Extent) -> Bool {
            record == next.record && bytes.map { $0 + Int(next.start - start) } == next.bytes
        }
    }

    /// A write record's data in a mapped log, with the checksum it must match. Kept in the
    /// extents themselves (not in a list of every record), so memory follows the extents.
    struct Record: Equatable {
        var data: UnsafeRawPointer
        var count: UInt32
        var crc: UInt32
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent] = []
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []
    /// The path of each mapping, for error messages.
    private var mappedPaths: [String] = []
    /// The records (by data address) whose data has been checked against its checksum.
    private let verified = Mutex<Set<UInt>>([])
    /// The most extents held at once while building the map, and the records read: the
    /// memory bound above, checked by tests.
    private(set) var peakExtentsHeld = 0
    private(set) var recordsRead = 0

    /// Maps `logs` (oldest first, each sealed and undamaged) and builds the map; `batch`: the
    /// fewest records folded into the map at once.
    init(logs: [String], batch: Int = 1 << 18) throws {
        var map = LastWriterWinsMap<Extent>(minimumBatch: batch)
        do {
            for path in logs {
                for change in try self.map(path) { map.add(change) }
            }
        } catch {
            for (p, n) in mappings { munmap(p, n) }
            throw error
        }
        extents = map.finish()
        peakExtentsHeld = map.peakHeld
        recordsRead = map.changesAdded
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
        mappedPaths.append(path)
        let scan = try LogScanner.scan(UnsafeRawBufferPointer(start: map, count: size), path: path, verifyWriteData: false) { header, data in
            switch header.type {
            case .write where data.count > 0:
                changes.append(Extent(start: Int64(header.offset), end: Int64(header.offset) + Int64(data.count), bytes: data.baseAddress,
                                      record: Record(data: data.baseAddress!, count: UInt32(data.count), crc: header.dataCRC)))
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
        return changes
    }

    /// Cuts overlapping changes (given oldest first) into disjoint extents, each taken from the
    /// newest change covering it: a sweep over the boundaries with a heap of the changes open there.
    static func lastWriterWins(_ changes: [Extent]) -> [Extent] {
        LastWriterWins.sweep(changes)
    }

    /// Checks the data of the record extent `e` comes from against its checksum once (racing
    /// readers may both check).
    private func verify(_ e: Extent) throws {
        guard let r = e.record, let bytes = e.bytes else { return }
        let key = UInt(bitPattern: r.data)
        guard !verified.withLock({ $0.contains(key) }) else { return }
        guard Checksum.crc32c(UnsafeRawBufferPointer(start: r.data, count: Int(r.count))) == r.crc else {
            let path = zip(mappings, mappedPaths).first { m, _ in
                UnsafeRawPointer(m.0) <= r.data && r.data < UnsafeRawPointer(m.0) + m.1
            }?.1 ?? "a redo log"
            let diskOffset = e.start - Int64(bytes - r.data)
            throw ReplicaError("\(path): damaged redo log (the data of the write at disk offset \(diskOffset) fails its checksum)")
        }
        _ = verified.withLock { $0.insert(key) }
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
                try verify(e)
                memcpy(buffer + Int(from - offset), bytes + Int(from - e.start), Int(to - from))
            } else {
                memset(buffer + Int(from - offset), 0, Int(to - from))
            }
            i += 1
        }
    }
}
