/// Where each byte of a disk at a point comes from when not from the base: disjoint extents,
/// each taken from the newest redo-log record covering it (the same sweep as the directory
/// store's `RedoOverlay`, over records described by `LogIndex` instead of mapped logs).
struct ExtentMap: Sendable {
    struct Extent: Sendable, Equatable {
        var start: Int64
        var end: Int64
        /// The log (index into the reader's logs) holding the bytes, nil where they read as zeros.
        var log: Int?
        /// Where `start`'s byte lies in that log object.
        var logOffset: Int64
    }

    /// Sorted by `start`, never overlapping.
    private(set) var extents: [Extent]

    /// Builds the map from changes given oldest first.
    init(changes: [Extent]) { extents = Self.lastWriterWins(changes) }

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
        guard !changes.isEmpty else { return [] }
        let order = changes.indices.sorted { changes[$0].start < changes[$1].start }
        var bounds = changes.flatMap { [$0.start, $0.end] }
        bounds.sort()
        var open = Heap() // indexes into `changes`: a higher index is a newer change
        var next = 0
        var result: [Extent] = []
        var i = 0
        while i < bounds.count - 1 {
            let at = bounds[i]
            var j = i + 1
            while j < bounds.count && bounds[j] == at { j += 1 }
            guard j < bounds.count else { break }
            let to = bounds[j]
            while next < order.count && changes[order[next]].start <= at { open.push(order[next]); next += 1 }
            while let top = open.top, changes[top].end <= at { _ = open.pop() }
            if let top = open.top {
                let c = changes[top]
                let piece = Extent(start: at, end: to, log: c.log, logOffset: c.log == nil ? 0 : c.logOffset + (at - c.start))
                if let last = result.last, last.end == at, last.log == piece.log,
                   last.log == nil || last.logOffset + (at - last.start) == piece.logOffset {
                    result[result.count - 1].end = to
                } else {
                    result.append(piece)
                }
            }
            i = j
        }
        return result
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

/// A binary max-heap of change indexes, for the sweep.
private struct Heap {
    private var items: [Int] = []
    var top: Int? { items.first }

    mutating func push(_ x: Int) {
        items.append(x)
        var i = items.count - 1
        while i > 0, items[(i - 1) / 2] < items[i] {
            items.swapAt(i, (i - 1) / 2)
            i = (i - 1) / 2
        }
    }

    mutating func pop() -> Int? {
        guard let first = items.first else { return nil }
        items[0] = items[items.count - 1]
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, items[l] > items[m] { m = l }
            if r < items.count, items[r] > items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return first
    }
}
