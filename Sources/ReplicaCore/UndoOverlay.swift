#if canImport(Glibc)
import Glibc
#endif

/// The bytes a disk held at an older recovery point where they differ from the replica:
/// an extent map into memory-mapped undo logs of the later points. Logs are added nearest
/// point first and each fills only the gaps the earlier ones left, because the nearest later
/// point's pre-images are the disk as it was at the chosen point. A failover reads through
/// this map instead of copying the disk, so mounting costs the change since the point,
/// never the disk's size. Mapped logs stay readable after pruning deletes their files.
final class UndoOverlay: @unchecked Sendable {
    struct Extent {
        var start: Int64
        var end: Int64
        /// The bytes of `start..<end`.
        var bytes: UnsafeRawPointer
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent] = []
    private var mappings: [(UnsafeMutableRawPointer, Int)] = []
    /// Logs already added, by device and inode (a pending point renamed when committed is the same file).
    private var added: Set<String> = []

    deinit { for (p, n) in mappings { munmap(p, n) } }

    var bytesMapped: Int { mappings.reduce(0) { $0 + $1.1 } }

    /// Adds one sealed undo log; returns false (adding nothing) for one that is not sealed cleanly:
    /// a commit torn while writing its undo log had not changed the replica yet. `allowUnsealed`
    /// takes the valid records of an unsealed one: a resync saves each block's pre-image
    /// durably before overwriting it, so a resync cut short has undo for all it changed.
    @discardableResult
    func add(undoLog path: String, allowUnsealed: Bool = false) throws -> Bool {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        let st = try fd.stat()
        let key = "\(st.st_dev):\(st.st_ino)"
        guard !added.contains(key) else { return true }
        let size = Int(st.st_size)
        guard size >= LogHeader.size else { return false }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            throw SystemError.current("mmap", path)
        }
        let all = UnsafeRawBufferPointer(start: map, count: size)
        var records: [Extent] = []
        let scan = try LogScanner.scan(all, path: path) { header, data in
            if header.type == .write, let base = data.baseAddress, data.count > 0 {
                records.append(Extent(start: Int64(header.offset), end: Int64(header.offset) + Int64(data.count), bytes: base))
            }
        }
        let usable: Bool
        if case .corrupt = scan.tail { usable = false } else { usable = scan.isSealed ? scan.tail == .clean : allowUnsealed }
        guard usable else {
            munmap(map, size)
            return false
        }
        mappings.append((map, size))
        added.insert(key)
        for r in records { fillGaps(r) }
        return true
    }

    /// Inserts the parts of `e` no extent covers yet.
    private func fillGaps(_ e: Extent) {
        var at = e.start
        var i = firstIndex(endingAfter: at)
        var inserts: [Extent] = []
        while at < e.end {
            if i < extents.count, extents[i].start <= at {
                at = max(at, extents[i].end)
                i += 1
                continue
            }
            let gapEnd = i < extents.count ? min(e.end, extents[i].start) : e.end
            inserts.append(Extent(start: at, end: gapEnd, bytes: e.bytes + Int(at - e.start)))
            at = gapEnd
        }
        guard !inserts.isEmpty else { return }
        extents.append(contentsOf: inserts)
        extents.sort { $0.start < $1.start }
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
    /// replica's bytes of that range); ranges the overlay does not hold are left as they are.
    func overlay(_ buffer: UnsafeMutableRawPointer, offset: Int64, count: Int) {
        let end = offset + Int64(count)
        var i = firstIndex(endingAfter: offset)
        while i < extents.count, extents[i].start < end {
            let e = extents[i]
            let from = max(e.start, offset), to = min(e.end, end)
            memcpy(buffer + Int(from - offset), e.bytes + Int(from - e.start), Int(to - from))
            i += 1
        }
    }
}
