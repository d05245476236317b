/// A set of byte ranges, merged where they touch; used to report what a log covers.
public struct RangeSet: Equatable, Sendable {
    public private(set) var ranges: [Range<UInt64>] = []
    private var pending: [Range<UInt64>] = []

    public init() {}

    public mutating func insert(_ range: Range<UInt64>) {
        guard !range.isEmpty else { return }
        pending.append(range)
        if pending.count > 65_536 { normalize() }
    }

    /// Sorts and merges what was inserted; call before reading `ranges`.
    public mutating func normalize() {
        guard !pending.isEmpty else { return }
        var all = ranges + pending
        pending.removeAll(keepingCapacity: true)
        all.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<UInt64>] = []
        for r in all {
            if let last = merged.last, r.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        ranges = merged
    }

    public var totalBytes: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }
}
