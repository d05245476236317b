import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The bytes a disk holds at a recovery point where they differ from the store's base: an
/// extent map into the memory-mapped redo logs of every point after the base up to the chosen
/// one. Each byte comes from the last change that touched it; zeroed ranges, and everything
/// above a size a log cut the disk to, read as zeros. A failover or drill reads through this
/// map instead of copying the disk, so opening one costs the changes since the base, never the
/// disk's size. Mapped logs stay readable after a merge deletes their files.
///
/// Memory: the map is built in batches (`LastWriterWinsMap`), so however many records the
/// window holds, the heap holds the disjoint extents (24 bytes each, at most one per smallest
/// write the disk's size holds) plus one batch of at least 262,144 records and the records of
/// one log (logs rotate at a bounded size); the logs' pages
/// are mapped, not copied (they count as resident only while cached, and the kernel can
/// drop them).
// @unchecked: immutable after init but for its mappings, read from FUSE worker threads.
final class RedoOverlay: @unchecked Sendable {
    struct Extent: SweptExtent {
        public var start: Int64
        var end: Int64
        /// The bytes of `start..<end`; nil where the range reads as zeros.
        var bytes: UnsafeRawPointer?

        func piece(from at: Int64, to: Int64) -> Extent {
            Extent(start: at, end: to, bytes: bytes.map { $0 + Int(at - start) })
        }

        func continues(into next: Extent) -> Bool { bytes.map { $0 + Int(next.start - start) } == next.bytes }
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent] = []
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []
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
        let scan = try LogScanner.scan(UnsafeRawBufferPointer(start: map, count: size), path: path) { header, data in
            switch header.type {
            case .write where data.count > 0:
                changes.append(Extent(start: Int64(header.offset), end: Int64(header.offset) + Int64(data.count), bytes: data.baseAddress))
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
    func overlay(_ buffer: UnsafeMutableRawPointer, offset: Int64, count: Int) {
        let end = offset + Int64(count)
        var i = firstIndex(endingAfter: offset)
        while i < extents.count, extents[i].start < end {
            let e = extents[i]
            let from = max(e.start, offset), to = min(e.end, end)
            if let bytes = e.bytes {
                memcpy(buffer + Int(from - offset), bytes + Int(from - e.start), Int(to - from))
            } else {
                memset(buffer + Int(from - offset), 0, Int(to - from))
            }
            i += 1
        }
    }
}
