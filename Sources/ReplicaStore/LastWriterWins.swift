/// A change to a range of a disk that a later change may cover in part: what
/// `LastWriterWins.sweep` cuts into disjoint pieces.
public protocol SweptExtent {
    var start: Int64 { get }
    var end: Int64 { get set }
    /// This change's part from `at` to `to` (within it).
    func piece(from at: Int64, to: Int64) -> Self
    /// Whether `next`, starting where this one ends, reads on from the same bytes (or zeros),
    /// so the two make one extent.
    func continues(into next: Self) -> Bool
}

/// The newest change wins: how a disk at a point reads over the redo logs of its points, for
/// the directory store's mapped logs (`RedoOverlay`) and the object store's log indexes alike.
public enum LastWriterWins {
    /// Cuts overlapping `changes` (given oldest first) into disjoint extents sorted by start,
    /// each taken from the newest change covering it: a sweep over the boundaries with a heap
    /// of the changes open there.
    public static func sweep<E: SweptExtent>(_ changes: [E]) -> [E] {
        guard !changes.isEmpty else { return [] }
        let order = changes.indices.sorted { changes[$0].start < changes[$1].start }
        var bounds = changes.flatMap { [$0.start, $0.end] }
        bounds.sort()
        var open = MaxHeap() // indexes into `changes`: a higher index is a newer change
        var next = 0
        var result: [E] = []
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
                let piece = changes[top].piece(from: at, to: to)
                if let last = result.last, last.end == at, last.continues(into: piece) {
                    result[result.count - 1].end = to
                } else {
                    result.append(piece)
                }
            }
            i = j
        }
        return result
    }
}

/// A binary max-heap of change indexes, for the sweep.
private struct MaxHeap {
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
