import CLinux
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// One protected image and its active change log. Every change is appended to the log
/// before it reaches the image, under one lock, so the log order is the image's order
/// and the log always holds at least what the image holds.
// @unchecked: FUSE worker threads call it directly; every field is guarded by `lock`.
public final class ImageJournal: @unchecked Sendable {
    public let name: String
    public let directory: String
    public let image: FileDescriptor
    public let chainID: [UInt8]
    /// True when the previous daemon did not shut down cleanly (its log was recovered).
    public let recoveredFromCrash: Bool
    private let lock = Lock()
    private let rangeFreed = Condition()
    private var log: ChangeLog
    /// Byte ranges whose record is logged but whose image write has not finished, with where
    /// the record starts in its log. Only such a record can still be taken back out of a log
    /// (its image write failed), so a log's bytes before the first of them are final.
    private var inFlight: [(range: Range<Int64>, lsn: UInt64, logOffset: Int64)] = []
    /// Size changes and fallocates waiting for the in-flight writes to drain; new writes hold
    /// back meanwhile, so a steady stream of writes cannot starve them.
    private var exclusiveWaiting = 0
    /// The log sealed by the last cut, until its seal is durable: an fsync syncs it first.
    private var sealedNotDurable: ChangeLog?
    /// Fault-injection point for tests: runs between the log append and the image write,
    /// where a slow thread would let a later overlapping write overtake it.
    var beforeImageWrite: (@Sendable () -> Void)?
    /// Log bytes appended by writes since the mount, and that count at the last checkpoint.
    private var loggedBytes: UInt64 = 0
    private var checkpointedBytes: UInt64 = 0
    /// The lowest LSN rolled back (and so given again to a later record) since the running
    /// checkpoint took its LSN; that checkpoint then records no more than this.
    private var lowestRollback = UInt64.max
    /// Set when the log and the image no longer agree (a logged write failed on the image).
    private var divergence: String?
    /// What the mount's own changes left the image and log like, checked at each cut.
    let integrity: ChainIntegrity
    /// Log bytes between early writeback starts (see `write`).
    static let logWritebackChunk: Int64 = 16 << 20
    /// Image writes at least this large (sequential streams, write-back of the kernel's cache)
    /// start their own disk writes at once; small random writes stay in the page cache.
    static let streamingWrite = 256 << 10

    init(name: String, directory: String, image: FileDescriptor, log: ChangeLog, recoveredFromCrash: Bool) {
        self.name = name
        self.directory = directory
        self.image = image
        self.chainID = log.header.chainID
        self.log = log
        self.recoveredFromCrash = recoveredFromCrash
        self.integrity = ChainIntegrity(image: image)
    }

    deinit { image.close() }

    /// Logs then writes `data` at `offset`. Appends are serialized (the log has no holes and
    /// its order is the order of the image's changes); the image write runs outside the lock,
    /// overlapping the next append, but waits for any earlier in-flight write to the same bytes.
    public func write(_ data: UnsafeRawBufferPointer, offset: Int64) throws {
        try write(data, offset: offset, whenOnImage: {})
    }

    /// `write`, calling `whenOnImage` once the bytes are logged and on the image: for a small
    /// write before the in-flight bookkeeping that takes the lock again (the mount's reply, so
    /// the caller's next request, its flush, does not wait for that lock), for a streaming one
    /// after it. Not called when the write throws.
    public func write(_ data: UnsafeRawBufferPointer, offset: Int64, whenOnImage: () -> Void) throws {
        let crc = Checksum.crc32c(data)
        let range = offset..<(offset + Int64(data.count))
        lock.lock()
        while exclusiveWaiting > 0 || inFlight.contains(where: { $0.range.overlaps(range) }) { rangeFreed.wait(lock) }
        let mark = log.position
        do {
            try log.appendWrite(data, offset: UInt64(offset), dataCRC: crc)
        } catch {
            lock.unlock()
            throw error
        }
        let appendedEnd = log.end
        let appendedTo = log
        let lsn = mark.lsn
        loggedBytes += UInt64(appendedEnd - mark.end)
        inFlight.append((range, lsn, mark.end))
        let logWriteback = log.takeWritebackRange(every: Self.logWritebackChunk)
        lock.unlock()
        // Start the disk writes now rather than all at the next fsync: the log is written
        // once and must reach the disk anyway, and streaming image writes are the next
        // fsync's work. The disk then runs while the daemon copies, not after it.
        if let (from, count) = logWriteback { appendedTo.startWriteback(offset: from, length: count) }

        var failure: Error?
        beforeImageWrite?()
        // Test hook (off in production): holds a write between its log append and its image
        // write, so a test can get later records logged before this image write fails.
        FaultPoint.reach("journal-before-image-write")
        do {
            try image.pwrite(data.baseAddress!, count: data.count, offset: offset)
            if data.count >= Self.streamingWrite { try? image.startWriteback(offset: offset, length: Int64(data.count)) }
        } catch {
            failure = error
        }
        // Small writes (a database's log) are answered before the bookkeeping; streaming ones
        // after it, as before: with early answers for every size, sequential 1 MiB writes ran
        // 0.70-0.88x of the build before in all four rounds measured (docs/benchmarks.md).
        let early = data.count < Self.streamingWrite
        if failure == nil && early { whenOnImage() }

        lock.lock()
        if failure == nil { integrity.noteChange(extendingTo: range.upperBound) }
        inFlight.remove(at: inFlight.firstIndex { $0.lsn == lsn && $0.range == range }!)
        if let failure {
            // The image did not take the write: take it back out of the log if nothing follows
            // it, otherwise the log now claims a change the image lacks and says so.
            if appendedTo === log && log.end == appendedEnd {
                try? log.rollBack(to: mark.end, lsn: mark.lsn, records: mark.records, dataBytes: mark.dataBytes)
                lowestRollback = min(lowestRollback, mark.lsn)
            } else {
                divergence = "a write at offset \(offset) is logged but failed on the image: \(failure)"
            }
        }
        rangeFreed.broadcast()
        lock.unlock()
        if let failure { throw failure }
        if !early { whenOnImage() }
    }

    /// Forgets a reported divergence: after a cut whose copy the replica is synced to (resync,
    /// initial copy), the image is the reference again. Without this, a resync after a failed
    /// log write was required again at once, every 10 s, for as long as the mount ran.
    func clearDivergence() { lock.withLock { divergence = nil } }

    /// Logs then applies a size change (truncate or extend).
    public func setSize(_ size: Int64) throws {
        lock.lock()
        defer { lock.unlock() }
        waitForInFlightWrites()
        let mark = log.position
        try log.appendSetSize(UInt64(size))
        do {
            try image.truncate(to: size)
            integrity.noteSize(size)
        } catch {
            try? log.rollBack(to: mark.end, lsn: mark.lsn, records: mark.records, dataBytes: mark.dataBytes)
            throw error
        }
    }

    /// fallocate through the journal: content changes (zeroed ranges, a larger size) are logged;
    /// pure preallocation changes no byte and is not. Collapse and insert ranges are refused.
    public func fallocate(mode: Int32, offset: Int64, length: Int64) throws {
        let supported = RFS_FALLOC_KEEP_SIZE | RFS_FALLOC_PUNCH_HOLE | RFS_FALLOC_ZERO_RANGE
        guard mode & ~supported == 0 else {
            throw SystemError(errno: EOPNOTSUPP, operation: "fallocate", path: image.path)
        }
        lock.lock()
        defer { lock.unlock() }
        waitForInFlightWrites()
        let mark = log.position
        let before = try image.size()
        if mode & (RFS_FALLOC_PUNCH_HOLE | RFS_FALLOC_ZERO_RANGE) != 0 {
            try log.appendZero(offset: UInt64(offset), length: UInt64(length))
        }
        if mode & RFS_FALLOC_KEEP_SIZE == 0 && offset + length > before {
            try log.appendSetSize(UInt64(offset + length))
        }
        do {
            try image.fallocate(mode: mode, offset: offset, length: length)
            integrity.noteChange(extendingTo: mode & RFS_FALLOC_KEEP_SIZE == 0 ? offset + length : nil)
        } catch {
            try? log.rollBack(to: mark.end, lsn: mark.lsn, records: mark.records, dataBytes: mark.dataBytes)
            throw error
        }
    }

    /// Size changes and fallocate wait for every in-flight image write (they may touch any byte).
    private func waitForInFlightWrites() {
        exclusiveWaiting += 1
        while !inFlight.isEmpty { rangeFreed.wait(lock) }
        exclusiveWaiting -= 1
        // Writers held back re-check once the caller releases the lock.
        rangeFreed.broadcast()
    }

    /// An fsync or fdatasync through the mount: makes the log durable up to every change
    /// made so far, not the image. The log is the journal: a crash before the next checkpoint
    /// is repaired at mount by replaying the records since the checkpoint onto the image
    /// (`CheckpointReplay`). Concurrent callers share one log sync (`ChangeLog.sync(upTo:)`).
    public func sync(dataOnly: Bool) throws {
        let (sealed, current, target) = lock.withLock { (sealedNotDurable, log, log.end) }
        // A write acknowledged before a cut is in the sealed log: it must be durable too.
        if let sealed { try sealed.sync() }
        try current.sync(upTo: target)
    }

    /// A checkpoint: makes the image durable with every change logged before the returned LSN,
    /// so a crash recovery need replay only the records from that LSN on. The logs are synced
    /// first, so the durable log holds at least what the durable image holds. Writers go on.
    func makeImageDurable() throws -> UInt64 {
        let (lsn, sealed, current, target, logged) = lock.withLock {
            if let directory = Self.checkpointCopyDirectory {
                // Test hook: the image as it is at this LSN, what a power loss right after
                // this checkpoint would leave on the disk.
                waitForInFlightWrites()
                copyImage(into: directory)
            }
            lowestRollback = .max
            return (log.nextLSN, sealedNotDurable, log, log.end, loggedBytes)
        }
        waitForWrites(before: lsn)
        if let sealed { try sealed.sync() }
        try current.sync(upTo: target)
        try image.fdatasync()
        // A write below `lsn` that failed on the image was taken back out of the log, and its
        // LSN went to a later record that may not be on the synced image.
        return lock.withLock {
            checkpointedBytes = max(checkpointedBytes, logged)
            return min(lsn, lowestRollback)
        }
    }

    /// Log bytes appended since the last checkpoint (the checkpointer's volume trigger).
    var bytesSinceCheckpoint: UInt64 { lock.withLock { loggedBytes - checkpointedBytes } }

    /// The LSN the next record will carry.
    var nextLSN: UInt64 { lock.withLock { log.nextLSN } }

    /// `REPLICAFS_TEST_CHECKPOINT_COPY`: a directory where each checkpoint leaves a copy of
    /// the image as it was at the checkpoint's LSN (tests simulate a power loss with it).
    static let checkpointCopyDirectory: String? = getenv("REPLICAFS_TEST_CHECKPOINT_COPY").map { String(cString: $0) }

    /// Copies the image into `directory` (atomically, under its name). Test hook only.
    private func copyImage(into directory: String) {
        let target = directory + "/" + name
        let tmp = target + ".tmp"
        do {
            let out = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            defer { out.close() }
            let size = try image.size()
            let chunk = 1 << 20
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
            defer { buffer.deallocate() }
            var at: Int64 = 0
            while at < size {
                let n = try image.pread(into: buffer, count: Int(min(Int64(chunk), size - at)), offset: at)
                guard n > 0 else { break }
                try out.pwrite(buffer, count: n, offset: at)
                at += Int64(n)
            }
            try out.truncate(to: size)
            try out.fsync()
            guard rename(tmp, target) == 0 else { throw SystemError.current("rename", tmp) }
        } catch {
            DaemonLog.logger.error("test hook: cannot copy \(name) at a checkpoint: \(error)")
        }
    }

    /// Called once a cut's sealed log is durable.
    func sealedLogIsDurable(_ sealed: ChangeLog) {
        lock.withLock { if sealedNotDurable === sealed { sealedNotDurable = nil } }
    }

    /// Waits until every image write logged before LSN `lsn` has reached the image, so a copy
    /// of the image taken afterwards holds everything the logs before that LSN hold.
    public func waitForWrites(before lsn: UInt64) {
        lock.withLock {
            while inFlight.contains(where: { $0.lsn < lsn }) { rangeFreed.wait(lock) }
        }
    }

    /// Appends a marker to the active log (app-consistent points, notes).
    public func mark(_ marker: Marker) throws {
        try lock.withLock { try log.appendMarker(marker) }
    }

    /// The active log's path and the bytes appended to it so far (no sync).
    public var activeLogEnd: (path: String, end: Int64) {
        lock.withLock { (log.path, log.end) }
    }

    /// The active log's path and the end of its final bytes: those before the first record
    /// whose image write is still running (the only kind a failure can take back out, see
    /// `write`), so they stay the log's through a rollback, a daemon killed (they are in the
    /// page cache) and the seal (which only appends). Not synced: only a crash of the host can
    /// lose them, and the mount after any crash requires a resync, which discards what was sent
    /// of the old logs. For sending a log ahead of its cut (`LogStreamer`).
    public func activeLogFinal() -> (path: String, end: Int64) {
        lock.withLock {
            let first = log.header.firstLSN
            let running = inFlight.lazy.filter { $0.lsn >= first }.map(\.logOffset).min()
            return (log.path, running ?? log.end)
        }
    }

    /// Where new records go: the active log's sequence, chain and first LSN.
    public var activeLog: (sequence: UInt64, chain: String, firstLSN: UInt64) {
        lock.withLock { (log.header.sequence, log.header.chainHex, log.header.firstLSN) }
    }

    /// Paths of this image's sealed logs (every log before the active one), in sequence order.
    public func sealedLogs() throws -> [String] {
        let active = activeLog.sequence
        return try FileSystem.list(directory).compactMap { file -> (String, UInt64)? in
            guard let p = LogName.parse(file), p.image == name, p.sequence < active else { return nil }
            return (directory + "/" + file, p.sequence)
        }.sorted { $0.1 < $1.1 }.map(\.0)
    }

    /// What `status` reports about this image.
    public var state: ImageState {
        lock.withLock {
            ImageState(name: name, size: (try? image.size()) ?? -1, activeLog: log.path,
                       sequence: log.header.sequence, logBytes: log.end, records: log.recordCount,
                       recoveredFromCrash: recoveredFromCrash, logError: log.broken?.description ?? divergence)
        }
    }

    /// Runs `body` under the lock with the active log and whether image writes are in flight.
    func withActiveLog<T>(_ body: (ChangeLog, Bool) -> T) -> T {
        lock.withLock { body(log, !inFlight.isEmpty) }
    }

    // MARK: rotation, driven by DiskSet with every journal's lock held

    func lockForCut() { lock.lock() }
    func unlockAfterCut() { lock.unlock() }

    /// Seals the active log at cut `cutID` and opens the next one. Caller holds the lock.
    func cutLocked(cutID: UInt64, reason: Seal.Reason) throws -> ChangeLog {
        let old = log
        // A log deleted or an image changed from outside breaks the chain: noted, kept until a resync.
        integrity.check(image: image, log: old, writesInFlight: !inFlight.isEmpty)
        let next = try ChangeLog.create(
            path: directory + "/" + LogName.make(image: name, sequence: old.header.sequence + 1),
            header: LogHeader(imageName: name, chainID: chainID, sequence: old.header.sequence + 1,
                              firstLSN: old.nextLSN + 2, createdNanos: Clock.nowNanos(),
                              imageSize: UInt64(max(0, (try? image.size()) ?? 0))),
            image: image)
        do {
            try old.appendMarker(Marker(kind: .cut, cutID: cutID, timeNanos: Clock.nowNanos()))
            try old.seal(reason: reason, cutID: cutID)
        } catch {
            _ = unlink(next.path)
            throw error
        }
        log = next
        sealedNotDurable = old
        return old
    }

    /// Seals the active log for a clean shutdown and makes everything durable; returns the
    /// LSN after the seal (the checkpoint: nothing is left to replay). A journal whose log and
    /// image disagree (a log write or an image write failed, the resync not yet run) is left
    /// unsealed, as a crash leaves it, and returns nil: the next mount then recovers it and
    /// requires a resync, even when the requirement could not be saved (the disk was full).
    @discardableResult
    func closeCleanly(cutID: UInt64) throws -> UInt64? {
        let end = try lock.withLock { () -> UInt64? in
            waitForInFlightWrites()
            if let failure = log.broken?.description ?? divergence {
                DaemonLog.logger.error("\(name): log left unsealed at shutdown, the next mount requires a resync: \(failure)")
                try? log.sync()
                return nil
            }
            try log.appendMarker(Marker(kind: .cleanShutdown, cutID: cutID, timeNanos: Clock.nowNanos()))
            try log.seal(reason: .cleanShutdown, cutID: cutID)
            try log.sync()
            try log.markReadOnly()
            return log.nextLSN
        }
        try image.fsync()
        return end
    }
}

/// A snapshot of one image's journal, for `status`.
public struct ImageState: Codable, Sendable {
    public var name: String
    public var size: Int64
    public var activeLog: String
    public var sequence: UInt64
    public var logBytes: Int64
    public var records: UInt64
    public var recoveredFromCrash: Bool
    public var logError: String?
}
