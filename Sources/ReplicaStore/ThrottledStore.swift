/// Any target store held to a bandwidth limit (`--max-bandwidth`) for what the replicator
/// sends: the initial copy, shipped logs and resync blocks. The engine opens every VM's store
/// through it, so every kind of store is throttled in one place. A store that sends in
/// requests of its own (`SendThrottling`, a receiver's client) is handed the limit and paces
/// each request; for the others the copy is paced by its progress reports as it goes, a
/// commit by the size of its logs before it reads or uploads them, a resync by the blocks it
/// reports sent. Reads (points, export, verify) are not throttled.
public final class ThrottledStore: TargetStore {
    public let inner: any TargetStore
    let throttle: @Sendable (Int) -> Void
    /// Whether `inner` paces its own requests (then nothing is paced twice here).
    let selfPaced: Bool

    /// `store` throttled by `throttle`, which blocks until the given bytes may go.
    public init(_ store: any TargetStore, throttle: @escaping @Sendable (Int) -> Void) {
        if let pacing = store as? any SendThrottling {
            inner = pacing.throttling(throttle)
            selfPaced = true
        } else {
            inner = store
            selfPaced = false
        }
        self.throttle = throttle
    }

    /// Pays `bytes` in pieces (the limiter sleeps off each), never more than an Int at once.
    func pay(_ bytes: Int64) {
        guard !selfPaced, bytes > 0 else { return }
        var left = bytes
        while left > 0 {
            let piece = min(left, 1 << 20)
            throttle(Int(piece))
            left -= piece
        }
    }

    public var location: String { inner.location }
    public func hasVM(_ vm: String) -> Bool { inner.hasVM(vm) }
    public func catalog(_ vm: String) throws -> StoreCatalog { try inner.catalog(vm) }
    public func recover(vm: String) throws { try inner.recover(vm: vm) }
    public func delete(vm: String) throws { try inner.delete(vm: vm) }
    public func initialCopy(_ vm: String) -> InitialCopy? { inner.initialCopy(vm) }

    @discardableResult
    public func seed(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition],
                     progress: ((Int64) -> Void)?) throws -> Int64 {
        try inner.seed(vm: vm, sources: sources, chains: chains) { n in
            self.pay(n)
            progress?(n)
        }
    }

    public func receive(vm: String, logs: [String: [SourceFile]], compress: Bool) throws -> (logs: [String: [SourceFile]], bytesSent: Int64) {
        try inner.receive(vm: vm, logs: logs, compress: compress)
    }

    public func discardReceived(vm: String) { inner.discardReceived(vm: vm) }

    @discardableResult
    public func commit(vm: String, logs: [String: [SourceFile]], consistency: RecoveryPoint.Consistency,
                       cut: UInt64, timeNanos: UInt64) throws -> RecoveryPoint {
        // A store without requests of its own reads (or uploads) the logs at commit.
        pay(try logs.values.joined().reduce(Int64(0)) { $0 + (try $1.size()) })
        return try inner.commit(vm: vm, logs: logs, consistency: consistency, cut: cut, timeNanos: timeNanos)
    }

    @discardableResult
    public func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64) throws -> [Int] {
        try inner.prune(vm: vm, retentionSeconds: retentionSeconds, nowNanos: nowNanos)
    }

    public func openPoint(vm: String, disk: String, point: PointSelector?) throws -> any PointReader {
        try inner.openPoint(vm: vm, disk: disk, point: point)
    }

    @discardableResult
    public func export(vm: String, point: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint {
        try inner.export(vm: vm, point: point, disk: disk, to: destination)
    }

    @discardableResult
    public func export(vm: String, point: PointSelector, disk: String, to destination: String,
                       progress: ((_ done: Int64, _ total: Int64) -> Void)?) throws -> RecoveryPoint {
        try inner.export(vm: vm, point: point, disk: disk, to: destination, progress: progress)
    }

    public func verify(vm: String, sources: [String: SourceFile], point: PointSelector?, blockSize: Int) throws -> [String: [Range<Int64>]] {
        try inner.verify(vm: vm, sources: sources, point: point, blockSize: blockSize)
    }

    @discardableResult
    public func resync(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition], reason: String?,
                       blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> ResyncReport {
        var paid: Int64 = 0
        return try inner.resync(vm: vm, sources: sources, chains: chains, reason: reason, blockSize: blockSize) { p in
            // `bytesSent` grows as differing blocks go; pay what is new.
            if p.bytesSent > paid {
                self.pay(p.bytesSent - paid)
                paid = p.bytesSent
            }
            progress?(p)
        }
    }

    public func resyncMark(_ vm: String) throws -> StoreCatalog.Resync? { try inner.resyncMark(vm) }

    public func rebase(vm: String, sources: [String: SourceFile], blockSize: Int) throws -> (RecoveryPoint, Int64) {
        try inner.rebase(vm: vm, sources: sources, blockSize: blockSize)
    }

    public func failoverState(_ vm: String) -> FailoverState? { inner.failoverState(vm) }
    public func failedOverVMs() -> [String] { inner.failedOverVMs() }

    public func beginFailover(vm: String, point: PointSelector, kind: FailoverState.Kind, mountpoint: String,
                              sourceDisksDir: String?, workDirectory: String?) throws -> FailoverState {
        try inner.beginFailover(vm: vm, point: point, kind: kind, mountpoint: mountpoint,
                                sourceDisksDir: sourceDisksDir, workDirectory: workDirectory)
    }

    public func saveFailover(_ state: FailoverState) throws { try inner.saveFailover(state) }
    public func discardFailover(vm: String) throws { try inner.discardFailover(vm: vm) }

    @discardableResult
    public func commitFailover(vm: String) throws -> FailoverState { try inner.commitFailover(vm: vm) }

    public func localFailoverDirectory(vm: String) -> String? { inner.localFailoverDirectory(vm: vm) }
    public func metadata(vm: String) throws -> VMMetadata? { try inner.metadata(vm: vm) }
    public func saveMetadata(_ metadata: VMMetadata) throws { try inner.saveMetadata(metadata) }
    public func vmNames() -> [String] { inner.vmNames() }
}
