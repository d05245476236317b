import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// One disk of a VM as of a recovery point, read-only and without a copy: the store's base
/// disk with the redo logs of every point after the base up to this one over it
/// (`RedoOverlay`). Replication going on meanwhile only adds later points, and a merge into
/// the base only rewrites bytes those logs cover, so a view stays at its point without
/// locking. Pruning never merges past a point a failover or drill holds.
// @unchecked: a failover disk's read path on FUSE worker threads; fields guarded by `lock`.
public final class PointView: PointReader, @unchecked Sendable {
    public let vm: String
    public let disk: String
    public let pointID: Int
    /// The disk's size at the point.
    public let size: Int64
    private let base: FileDescriptor
    private let overlay: RedoOverlay

    /// Opens `disk` of `vm` at point `pointID` (nil: the latest point). `locked`: the caller
    /// holds the store's lock already (flock would block on a second descriptor).
    public init(store: DirectoryStore, vm: String, disk: String, pointID: Int?, locked: Bool = false) throws {
        self.vm = vm
        self.disk = disk
        let base = try FileDescriptor.open(store.basePath(vm, disk), O_RDONLY)
        self.base = base
        do {
            let open = { () throws -> (Int, Int64, RedoOverlay) in
                let catalog = try StoreCatalog.load(store.catalogPath(vm))
                guard let entry = catalog.disks.first(where: { $0.name == disk }) else {
                    throw ReplicaError("disk \(disk) is not part of VM \(vm)")
                }
                let through = catalog.baseThrough ?? 0
                let id = pointID ?? catalog.points.last?.id ?? through
                let size: Int64
                if let point = catalog.points.first(where: { $0.id == id }) {
                    guard let s = point.diskSizes[disk] else { throw ReplicaError("disk \(disk) has no size at point \(id) of VM \(vm)") }
                    size = s
                } else if id == through {
                    size = try entry.size ?? base.size()
                } else {
                    throw ReplicaError("recovery point \(id) not found for VM \(vm)", code: .noSuchPoint)
                }
                let logs = try store.redoLogs(vm, disk: disk, after: through, through: id)
                return (id, size, try RedoOverlay(logs: logs))
            }
            (self.pointID, size, overlay) = try locked ? open() : store.withLock(vm, exclusive: false, open)
        } catch {
            base.close()
            throw error
        }
    }

    deinit { base.close() }

    /// Bytes of redo logs mapped (what opening the view cost, beside the base).
    public var overlayBytes: Int { overlay.bytesMapped }

    /// Fills `count` bytes at `offset` as of the point (zeros past the base's end; callers
    /// clip reads to `size`).
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        var done = 0
        while done < count {
            let n = try base.pread(into: buffer + done, count: count - done, offset: offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        if done < count { memset(buffer + done, 0, count - done) }
        try overlay.overlay(buffer, offset: offset, count: count)
    }
}
