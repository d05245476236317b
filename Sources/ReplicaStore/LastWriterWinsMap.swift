/// The last-writer-wins map of changes fed one at a time, oldest first, built in batches so
/// that memory follows the size of the map, not the number of changes: a point read over a
/// retention window of millions of records holds the disjoint extents (at most one per
/// smallest write the disk's size holds, whatever the window) plus one batch, never every
/// record at once. Each batch is folded into the map by `LastWriterWins.sweep`, the map's
/// extents going in as older changes than the batch's; a batch is at least as large as the
/// map, so the folds cost O(n log n) over n changes in all, as one sweep would.
public struct LastWriterWinsMap<E: SweptExtent> {
    /// Disjoint, sorted by start: the changes folded so far.
    private var extents: [E] = []
    private var pending: [E] = []
    /// Fewest changes a batch gathers before it is folded (smaller batches when testing).
    public let minimumBatch: Int
    /// The most extents held at once (map plus batch, at a fold): what the memory bound is about.
    public private(set) var peakHeld = 0
    /// Changes fed in all.
    public private(set) var changesAdded = 0

    public init(minimumBatch: Int = 1 << 18) {
        self.minimumBatch = max(1, minimumBatch)
    }

    /// Adds a change newer than every change added before it.
    public mutating func add(_ change: E) {
        pending.append(change)
        changesAdded += 1
        if pending.count >= max(minimumBatch, extents.count) { fold() }
    }

    /// The map of every change added: disjoint extents sorted by start, each from the newest
    /// change covering it.
    public mutating func finish() -> [E] {
        fold()
        return extents
    }

    private mutating func fold() {
        guard !pending.isEmpty else { return }
        peakHeld = max(peakHeld, extents.count + pending.count)
        extents = LastWriterWins.sweep(extents + pending)
        pending.removeAll(keepingCapacity: true)
    }
}
