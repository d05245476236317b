import CLinux
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A failed-over disk: it reads as the VM's disk at the chosen recovery point (`PointView`,
/// no copy) and takes writes into its own copy-on-write layer (`CowLayer`), so neither the
/// store's replica nor its points change. Opening it costs the same for a 1 GiB disk as for
/// a 64 GiB one. Calls come from FUSE threads and stay synchronous under one lock.
// @unchecked: FUSE worker threads call it directly; every field is guarded by `lock`.
public final class FailoverDisk: @unchecked Sendable {
    public let name: String
    let base: any PointReader
    let cow: CowLayer
    private let lock = Lock()
    private var frozenFlag = false
    private var refused = 0
    private var modified: timespec
    /// While reprotected: every change, logged before it reaches the layer.
    private var reverse: ReverseLog?

    /// Opens disk `disk` of `vm` at `point`; the writable layer lives in `directory`. Replication
    /// may go on committing into the store meanwhile (a test failover): the view stays at its point.
    public init(store: any TargetStore, vm: String, disk: String, point: RecoveryPoint, directory: String) throws {
        name = disk
        guard let size = point.diskSizes[disk] else { throw ReplicaError("disk \(disk) has no size at point \(point.id) of VM \(vm)") }
        base = try store.openPoint(vm: vm, disk: disk, point: .id(point.id))
        cow = try CowLayer(path: directory + "/" + disk, initialSize: size)
        modified = timespec(tv_sec: Int(point.timeNanos / 1_000_000_000), tv_nsec: Int(point.timeNanos % 1_000_000_000))
    }

    public var size: Int64 { lock.withLock { cow.size } }
    public var modifiedTime: timespec { lock.withLock { modified } }
    /// Bytes written since the failover (whole 4 KiB blocks).
    public var writtenBytes: Int64 { lock.withLock { Int64(cow.writtenBlocks) * CowLayer.blockSize } }
    /// Bytes of redo logs mapped to present the point.
    public var overlayBytes: Int { base.overlayBytes }

    /// Changes refused since the disk was frozen: a VM still writing during a failback.
    public var refusedWrites: Int { lock.withLock { refused } }

    /// Holds every disk's lock at once (in order) while `body` runs: one cut across the VM's disks.
    static func withAllLocked<T>(_ disks: [FailoverDisk], _ body: () throws -> T) rethrows -> T {
        for d in disks { d.lock.lock() }
        defer { for d in disks.reversed() { d.lock.unlock() } }
        return try body()
    }

    /// Seals the reverse log with the lock already held (see `withAllLocked`).
    func rotateReverseLogLocked() throws -> String? { try reverse?.rotate(size: cow.size) }

    /// Once frozen, writes fail with EROFS: a failback's final copy must see the last write.
    /// Freezing or thawing starts the refused-write count again: an abandoned failback's
    /// refusals must not stop the next one.
    public var frozen: Bool {
        get { lock.withLock { frozenFlag } }
        set { lock.withLock { frozenFlag = newValue; refused = 0 } }
    }

    /// Starts logging every change into a new HRL chain in `directory` (reverse replication's cut).
    public func startReverseLog(directory: String) throws {
        try lock.withLock { reverse = try ReverseLog(directory: directory, disk: name, size: cow.size) }
    }

    /// Seals the reverse log and opens the next; returns the sealed log (nil when not logging).
    public func rotateReverseLog() throws -> String? {
        try lock.withLock { try reverse?.rotate(size: cow.size) }
    }

    public var isReverseLogging: Bool { lock.withLock { reverse != nil } }

    /// Reads up to `count` bytes at `offset`; fewer at the end of the disk.
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        try lock.withLock {
            let end = min(offset + Int64(count), cow.size)
            guard offset < end else { return 0 }
            var at = offset
            let bs = CowLayer.blockSize
            while at < end {
                let written = cow.isWritten(at / bs)
                var runEnd = min(end, (at / bs + 1) * bs)
                while runEnd < end, cow.isWritten(runEnd / bs) == written { runEnd = min(end, runEnd + bs) }
                let n = Int(runEnd - at)
                let dst = buffer + Int(at - offset)
                if written {
                    var got = 0
                    while got < n {
                        let r = try cow.data.pread(into: dst + got, count: n - got, offset: at + Int64(got))
                        if r == 0 { break }
                        got += r
                    }
                    if got < n { memset(dst + got, 0, n - got) }
                } else {
                    try base.read(into: dst, count: n, offset: at)
                }
                at = runEnd
            }
            return Int(end - offset)
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, offset: Int64) throws {
        guard data.count > 0 else { return }
        try lock.withLock {
            try checkWritable()
            let end = offset + Int64(data.count)
            try reverse?.write(data, offset: offset)
            if end > cow.size { try grow(to: end) }
            let bs = CowLayer.blockSize
            if offset % bs != 0 { try materialize(offset / bs) }
            if end % bs != 0 { try materialize((end - 1) / bs) }
            try cow.data.pwrite(data.baseAddress!, count: data.count, offset: offset)
            cow.mark(offset / bs, (end + bs - 1) / bs)
            touch()
        }
    }

    public func setSize(_ newSize: Int64) throws {
        try lock.withLock {
            try checkWritable()
            if newSize != cow.size { try reverse?.setSize(newSize) }
            if newSize > cow.size { try grow(to: newSize) } else if newSize < cow.size { try shrink(to: newSize) }
            touch()
        }
    }

    /// fallocate(2) as the VM sees it: allocation (size may grow), punch hole and zero range.
    public func fallocate(mode: Int32, offset: Int64, length: Int64) throws {
        try lock.withLock {
            try checkWritable()
            let keep = mode & RFS_FALLOC_KEEP_SIZE != 0
            let end = offset + length
            switch mode & ~RFS_FALLOC_KEEP_SIZE {
            case 0:
                if !keep && end > cow.size {
                    try reverse?.setSize(end)
                    try grow(to: end)
                }
            case RFS_FALLOC_PUNCH_HOLE where keep, RFS_FALLOC_ZERO_RANGE:
                if !keep && end > cow.size {
                    try reverse?.setSize(end)
                    try grow(to: end)
                }
                try reverse?.zero(offset, min(end, cow.size) - offset)
                try zero(offset, min(end, cow.size))
            default:
                throw SystemError(errno: EOPNOTSUPP, operation: "fallocate", path: name)
            }
            touch()
        }
    }

    /// Makes every write so far durable.
    public func sync() throws {
        try lock.withLock {
            try reverse?.sync()
            try cow.save()
        }
    }

    // MARK: copy-on-write, called with the lock held

    private func checkWritable() throws {
        if frozenFlag {
            refused += 1
            throw SystemError(errno: EROFS, operation: "write", path: name + " (frozen for failback)")
        }
    }

    private func touch() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        modified = now
    }

    /// Copies a block's current bytes into the writable layer (bytes past the size read zeros).
    private func materialize(_ block: Int64) throws {
        guard !cow.isWritten(block) else { return }
        let bs = CowLayer.blockSize
        let start = block * bs
        let n = Int(min(bs, cow.size - start))
        guard n > 0 else { cow.mark(block, block + 1); return }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(bs), alignment: 4096)
        defer { buffer.deallocate() }
        try base.read(into: buffer, count: n, offset: start)
        try cow.data.pwrite(buffer, count: n, offset: start)
        cow.mark(block, block + 1)
    }

    /// The new bytes read zeros, whatever the replica holds there.
    private func grow(to newSize: Int64) throws {
        let bs = CowLayer.blockSize
        if cow.size % bs != 0 { try materialize(cow.size / bs) }
        try cow.data.truncate(to: newSize)
        cow.mark((cow.size + bs - 1) / bs, (newSize + bs - 1) / bs)
        cow.size = newSize
        cow.sizeChanged()
    }

    private func shrink(to newSize: Int64) throws {
        let bs = CowLayer.blockSize
        if newSize % bs != 0 { try materialize(newSize / bs) }
        // The map learns the new size durably before the layer's bytes past it go: a crash in
        // between must not bring back the old size with its fsynced tail read as zeros.
        cow.size = newSize
        cow.sizeChanged()
        try cow.save()
        try cow.data.truncate(to: newSize)
    }

    private func zero(_ from: Int64, _ to: Int64) throws {
        guard from < to else { return }
        let bs = CowLayer.blockSize
        let firstFull = (from + bs - 1) / bs, endFull = to / bs
        var zeros = [UInt8](repeating: 0, count: Int(bs))
        // Partial blocks at the edges: keep the rest of the block, zero the part.
        for block in Set([from / bs, (to - 1) / bs]) where block < firstFull || block >= endFull {
            try materialize(block)
            let a = max(from, block * bs), b = min(to, (block + 1) * bs)
            try zeros.withUnsafeMutableBytes { try cow.data.pwrite($0.baseAddress!, count: Int(b - a), offset: a) }
        }
        if firstFull < endFull {
            do {
                try cow.data.fallocate(mode: RFS_FALLOC_PUNCH_HOLE | RFS_FALLOC_KEEP_SIZE, offset: firstFull * bs, length: (endFull - firstFull) * bs)
            } catch let e as SystemError where e.errno == EOPNOTSUPP {
                for block in firstFull..<endFull {
                    try zeros.withUnsafeMutableBytes { try cow.data.pwrite($0.baseAddress!, count: Int(bs), offset: block * bs) }
                }
            }
            cow.mark(firstFull, endFull)
        }
    }
}
