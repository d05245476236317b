import ReplicaStore

/// Where each byte of a disk at a point comes from when not from the base: disjoint extents,
/// each taken from the newest redo-log record covering it (the same sweep as the directory
/// store's `RedoOverlay`, over records described by `LogIndex` instead of mapped logs).
struct ExtentMap: Sendable {
    struct Extent: Sendable, Equatable, SweptExtent {
        var start: Int64
        var end: Int64
        /// The log (index into the reader's logs) holding the bytes, nil where they read as zeros.
        var log: Int?
        /// Where `start`'s byte lies in that log object.
        var logOffset: Int64

        func piece(from at: Int64, to: Int64) -> Extent {
            Extent(start: at, end: to, log: log, logOffset: log == nil ? 0 : logOffset + (at - start))
        }

        func continues(into next: Extent) -> Bool {
            log == next.log && (log == nil || logOffset + (next.start - start) == next.logOffset)
        }
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent]

    /// Builds the map from changes given oldest first.
    init(changes: [Extent]) { extents = Self.lastWriterWins(changes) }

    /// A map from extents already disjoint and sorted (what `LastWriterWinsMap` gives).
    init(sweptExtents: [Extent]) { extents = sweptExtents }

    /// The changes of `index`'s records (log number `log`), in record order.
    static func changes(of index: LogIndex, log: Int) -> [Extent] {
        index.records.map { r in
            switch r.kind {
            case .write: return Extent(start: r.diskOffset, end: r.diskOffset + r.length, log: log, logOffset: r.logOffset)
            case .zero: return Extent(start: r.diskOffset, end: r.diskOffset + r.length, log: nil, logOffset: 0)
            // Bytes past a cut read as zeros, even if a later change grows the disk again.
            case .setSize: return Extent(start: r.diskOffset, end: Int64.max, log: nil, logOffset: 0)
            }
        }
    }

    static func lastWriterWins(_ changes: [Extent]) -> [Extent] {
        LastWriterWins.sweep(changes)
    }

    /// Index of the first extent whose end lies after `offset`.
    func firstIndex(endingAfter offset: Int64) -> Int {
        var lo = 0, hi = extents.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if extents[mid].end <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Chunks (of `chunkSize`) that any extent touches below `size`: what a merge rewrites.
    func touchedChunks(chunkSize: Int, size: Int64) -> Set<Int> {
        var touched = Set<Int>()
        for e in extents where e.start < size {
            let last = (min(e.end, size) - 1) / Int64(chunkSize)
            for c in (e.start / Int64(chunkSize))...last { touched.insert(Int(c)) }
        }
        return touched
    }
}
