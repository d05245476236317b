import ReplicaSystem
/// The secondary site as the engine sees it: a store of VM replicas, each a base and a list of
/// recovery points. The engine (replicator, initial copy, resync, failover, failback,
/// reprotect) talks to its target only through this protocol, so a store may be a local
/// directory (`DirectoryStore`), a receiver on another host or an object store. Nothing that
/// crosses it is a location inside the store: VMs, disks and points are named, disk bytes are
/// read by range through a `PointReader`, and data going in arrives as `SourceFile`s (bytes on
/// the sending host, read by range) or as chunks. The contract (atomicity, what is verified
/// when, what a remote store must guarantee): docs/store-interface.md.
public protocol TargetStore: AnyObject, Sendable {
    /// Where the store is, for messages and for the VM's settings (`--target` as given).
    var location: String { get }

    // MARK: VMs and points

    /// Whether the store holds a replica of `vm` (its initial copy finished).
    func hasVM(_ vm: String) -> Bool

    /// The VM's catalog: disks, chain positions, points, a resync in progress. Throws a
    /// non-recoverable error for a VM the store does not hold.
    func catalog(_ vm: String) throws -> StoreCatalog

    /// Repairs what a crash interrupted for `vm` (a half-written point is dropped or
    /// finished, never shown half).
    func recover(vm: String) throws

    /// Removes a VM's replica, its points and its metadata; refuses a failed-over VM.
    func delete(vm: String) throws

    // MARK: initial copy

    /// The initial copy in progress for `vm`, if one was started and not finished.
    func initialCopy(_ vm: String) -> InitialCopy?

    /// Copies each disk from `sources` (only their data, holes skipped) as the VM's base,
    /// resuming an interrupted copy where its durable progress says; `chains` says where each
    /// disk's logs continue. The VM exists (`hasVM`) only once every byte is durable.
    @discardableResult
    func seed(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition],
              progress: ((Int64) -> Void)?) throws -> Int64

    // MARK: shipping and committing

    /// Moves shipped logs into the store ahead of their commit (compressed on the way when
    /// `compress`); returns the logs as the store will commit them and the bytes that
    /// crossed. A store that reads the sender's files itself at commit returns them as given.
    func receive(vm: String, logs: [String: [SourceFile]], compress: Bool) throws -> (logs: [String: [SourceFile]], bytesSent: Int64)

    /// Drops what `receive` staged and no commit took (a failed or abandoned transfer).
    func discardReceived(vm: String)

    /// Verifies the logs (every record's checksum, sealed, one chain per disk continuing the
    /// last commit: else `.resyncRequired`), stores them as a pending point and commits it in
    /// one atomic step: readers see the point whole or not at all, and a crash before the step
    /// leaves no point. Logs wholly before a disk's next LSN (a resend) are skipped.
    @discardableResult
    func commit(vm: String, logs: [String: [SourceFile]], consistency: RecoveryPoint.Consistency,
                cut: UInt64, timeNanos: UInt64) throws -> RecoveryPoint

    /// Drops points older than `retentionSeconds` (never the latest, never one a failover
    /// holds, nor any after it) and merges them into the base; returns the dropped ids.
    @discardableResult
    func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64) throws -> [Int]

    // MARK: reading points

    /// A reader of `disk` as of `point` (nil: the latest). It stays at its point while
    /// replication commits and prunes go on.
    func openPoint(vm: String, disk: String, point: PointSelector?) throws -> any PointReader

    /// Writes `disk` as of `point` to the local file `destination`; returns the point.
    @discardableResult
    func export(vm: String, point: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint

    /// `export`, telling `progress` the bytes done and the bytes in all as it goes (a store
    /// that cannot tell reports only the end; see the default below).
    @discardableResult
    func export(vm: String, point: PointSelector, disk: String, to destination: String,
                progress: ((_ done: Int64, _ total: Int64) -> Void)?) throws -> RecoveryPoint

    /// Compares `sources` with a point (default the latest) block by block; each disk's
    /// differing ranges, empty when equal.
    func verify(vm: String, sources: [String: SourceFile], point: PointSelector?, blockSize: Int) throws -> [String: [Range<Int64>]]

    // MARK: resync and rebase

    /// Stores the blocks where `sources` differ from the latest point as the next point's
    /// first redo log, without touching committed points, and moves the chains to `chains`;
    /// the next commit makes the point. A resync cut short is dropped by `recover`.
    @discardableResult
    func resync(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition], reason: String?,
                blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> ResyncReport

    /// The resync mark of `vm` (nil when none).
    func resyncMark(_ vm: String) throws -> StoreCatalog.Resync?

    /// After a failback: commits `sources` (the disks now at home) as a new crash-consistent
    /// point holding only the blocks that differ from the latest; chains restart.
    func rebase(vm: String, sources: [String: SourceFile], blockSize: Int) throws -> (RecoveryPoint, Int64)

    // MARK: failover

    /// The VM's failover in progress, if any.
    func failoverState(_ vm: String) -> FailoverState?

    /// The VMs with a failover recorded, by name: what a host restarting mounts again
    /// (`failover remount --all`), since the mounts themselves do not survive a reboot.
    func failedOverVMs() -> [String]

    /// Holds the selected point for a failover of `vm` (no prune drops it or a later one) and
    /// records the failover with its working directory on the failing-over host (nil: the
    /// store's `localFailoverDirectory`); refuses a VM already failed over. A planned or
    /// unplanned failover stops the store taking replication until failback.
    func beginFailover(vm: String, point: PointSelector, kind: FailoverState.Kind, mountpoint: String,
                       sourceDisksDir: String?, workDirectory: String?) throws -> FailoverState

    /// Replaces the recorded failover state (reprotect, failback progress).
    func saveFailover(_ state: FailoverState) throws

    /// Releases the failover's point and forgets the failover: the store is as before it.
    func discardFailover(vm: String) throws

    /// Makes the failover's point final: older points go and the base moves to it.
    @discardableResult
    func commitFailover(vm: String) throws -> FailoverState

    /// A directory on this host for a failover's own files (copy-on-write layers, reverse
    /// logs, mapped networks) when the store lives here; nil for a store elsewhere, where the
    /// caller names one.
    func localFailoverDirectory(vm: String) -> String?

    // MARK: metadata

    /// The VM's disks and networks as `protect` recorded them; nil when none were.
    func metadata(vm: String) throws -> VMMetadata?

    /// Records the VM's disks and networks (the VM need not have a replica yet).
    func saveMetadata(_ metadata: VMMetadata) throws

    /// The VMs the store holds a replica or metadata of, by name (`replicafs vms --target`).
    func vmNames() -> [String]
}

/// Where a disk's change-log chain continues: its chain id and the next LSN.
public typealias ChainPosition = (chain: String, nextLSN: UInt64)

extension TargetStore {
    /// A store without progress reports: the export, then 100%.
    @discardableResult
    public func export(vm: String, point: PointSelector, disk: String, to destination: String,
                       progress: ((_ done: Int64, _ total: Int64) -> Void)?) throws -> RecoveryPoint {
        let p = try export(vm: vm, point: point, disk: disk, to: destination)
        if let size = try? FileSystem.stat(destination).st_size { progress?(Int64(size), Int64(size)) }
        return p
    }

    /// The VM's recovery points, oldest first.
    public func points(_ vm: String) throws -> [RecoveryPoint] { try catalog(vm).points }

    /// A store that cannot list its VMs names none (the directory store lists them).
    public func vmNames() -> [String] { [] }

    /// `hasVM`, or an error naming the store.
    public func requireVM(_ vm: String) throws {
        guard hasVM(vm) else { throw ReplicaError("unknown VM \(vm) in target store \(location)", code: .unknownVM) }
    }
}
