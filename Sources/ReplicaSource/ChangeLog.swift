import CLinux
import ReplicaLog
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The open, appendable HRL change log of one image. Not thread-safe: its `ImageJournal`
/// serializes access. Every append is one positioned write into the page cache, so a
/// record survives the daemon being killed the moment the call returns.
public final class ChangeLog {
    public let path: String
    public let header: LogHeader
    public let fd: FileDescriptor
    /// Where the next record goes.
    public private(set) var end: Int64
    public private(set) var nextLSN: UInt64
    public private(set) var recordCount: UInt64 = 0
    public private(set) var dataBytes: UInt64 = 0
    public private(set) var seal: Seal?
    /// Set when an append failed and could not be rolled back; the log takes no more records.
    public private(set) var broken: SystemError?
    /// Where writeback was last started up to (`takeWritebackRange`).
    private var writebackStarted: Int64 = 0
    /// Space past `end` already allocated (fallocate, file size unchanged), so appends fill
    /// allocated blocks: ext4 then reserves no delayed-allocation blocks page by page and the
    /// writeback finds them mapped. A 1 GiB sequential write took about 10% less daemon CPU
    /// and ran faster in most alternating runs (docs/benchmarks.md). Released by `seal`.
    private var preallocatedTo: Int64 = 0
    /// Cleared when the filesystem cannot preallocate (tmpfs, no space): appends go on without.
    private var preallocating = true
    /// The file's size: past `end`, zeros written ahead while flushes are frequent. An append
    /// below it changes no file size and no extent, so the flush after it syncs the data only;
    /// growing the file instead makes every flush commit the filesystem's journal too (about
    /// twice the time of a 4 KiB overwrite with fdatasync on ext4 here). The zeros read as a
    /// torn tail until the seal cuts them (recovery after a crash cuts them the same way).
    private var fileEnd: Int64 = 0
    /// Set by `sync(upTo:)` while flushes come every few records (a database's log), cleared
    /// when they cover megabytes (a streaming writer, whose log need not be written twice).
    private let flushHeavy = Atomic<Bool>(false)
    /// The end covered by the previous sync, to measure the bytes per flush.
    private var lastSyncCovering: Int64 = 0
    private var smallSyncs = 0
    static let writeAheadChunk: Int64 = 1 << 20
    static let preallocationChunk: Int64 = 32 << 20
    /// Set once the log's directory entry has been synced; fsyncs race to set it.
    private var directoryDurable = false
    private let directoryLock = Lock()
    /// `end`, readable by syncing threads without the journal's lock: a record below it was
    /// written to the page cache before the value was stored.
    private let publishedEnd = Atomic<Int64>(0)
    /// Group commit: one fdatasync at a time; callers whose records an earlier or running
    /// sync covers wait for it instead of issuing their own.
    private let syncLock = Lock()
    private let syncFinished = Condition()
    private var syncRunning = false
    /// Log bytes known durable, and a count of rollbacks (a sync that started before a
    /// rollback must not claim the rewritten bytes).
    private var durableEnd: Int64 = 0
    private var rollbacks: UInt64 = 0
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: RecordHeader.size, alignment: 8)

    private init(path: String, header: LogHeader, fd: FileDescriptor, end: Int64, nextLSN: UInt64) {
        self.path = path
        self.header = header
        self.fd = fd
        self.end = end
        self.nextLSN = nextLSN
        self.fileEnd = end
        publishedEnd.store(end, ordering: .releasing)
    }

    /// The descriptor closes with the last reference, so a syncer holding the log keeps it
    /// valid while a rotation swaps in the next one.
    deinit {
        fd.close()
        scratch.deallocate()
    }

    /// Creates a new log file (it must not exist yet) and writes its header. It is created
    /// 0600; with `image`, it then takes the image's owner, group and read/write bits, since it
    /// holds the same data (a 0600 image must not have a world-readable log).
    public static func create(path: String, header: LogHeader, image: FileDescriptor? = nil) throws -> ChangeLog {
        // Written under a temporary name and linked into place with its header whole: a daemon
        // killed in between left a log shorter than its header, which the next mount refused.
        // Hidden, so the disks directory never serves it as an image (DiskEntries).
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let temporary = String(path[..<slash]) + "." + String(path[slash...]) + ".creating"
        let fd = try FileDescriptor.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
        do {
            if let image { try inheritAccess(fd, from: image.stat()) }
            var bytes = header.encode()
            try bytes.withUnsafeMutableBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) }
            // link, not rename: an existing log is never replaced (EEXIST, as O_EXCL gave).
            guard link(temporary, path) == 0 else { throw SystemError.current("link", path) }
            _ = unlink(temporary)
        } catch {
            fd.close()
            _ = unlink(temporary)
            throw error
        }
        return ChangeLog(path: path, header: header, fd: fd, end: Int64(LogHeader.size), nextLSN: header.firstLSN)
    }

    /// Reopens an unsealed log after a crash: cuts it at the end of its last valid record
    /// (dropping a torn tail) so that a marker and a seal can be appended.
    public static func reopenForRecovery(scan: LogScan) throws -> ChangeLog {
        let fd = try FileDescriptor.open(scan.path, O_RDWR)
        do {
            if scan.validEnd < scan.fileSize { try fd.truncate(to: scan.validEnd) }
        } catch {
            fd.close()
            throw error
        }
        let log = ChangeLog(path: scan.path, header: scan.header, fd: fd, end: scan.validEnd, nextLSN: scan.nextLSN)
        log.recordCount = scan.recordCount
        log.dataBytes = scan.dataBytes
        return log
    }

    /// Appends a write record. `dataCRC` is computed by the caller outside any lock.
    public func appendWrite(_ data: UnsafeRawBufferPointer, offset: UInt64, dataCRC: UInt32) throws {
        try append(type: .write, offset: offset, extent: UInt64(data.count), data: data, dataCRC: dataCRC)
    }

    public func appendSetSize(_ size: UInt64) throws {
        try append(type: .setSize, offset: size, extent: 0, data: UnsafeRawBufferPointer(start: nil, count: 0), dataCRC: 0)
    }

    public func appendZero(offset: UInt64, length: UInt64) throws {
        try append(type: .zero, offset: offset, extent: length, data: UnsafeRawBufferPointer(start: nil, count: 0), dataCRC: 0)
    }

    public func appendMarker(_ marker: Marker) throws {
        let payload = marker.encode()
        try payload.withUnsafeBytes {
            try append(type: .marker, offset: 0, extent: 0, data: $0, dataCRC: Checksum.crc32c($0))
        }
    }

    /// Appends the seal record and makes the log durable. Nothing is appended afterwards.
    public func seal(reason: Seal.Reason, cutID: UInt64) throws {
        let s = Seal(reason: reason, cutID: cutID, recordCount: recordCount, dataBytes: dataBytes,
                     timeNanos: Clock.nowNanos())
        let payload = s.encode()
        // Nothing may follow the seal: cut the zeros written ahead first (a sealed log with
        // bytes after its seal reads as corrupt).
        if fileEnd > end {
            try fd.truncate(to: end)
            fileEnd = end
        }
        try payload.withUnsafeBytes {
            try append(type: .seal, offset: 0, extent: 0, data: $0, dataCRC: Checksum.crc32c($0), writeAhead: false)
        }
        seal = s
        // Give back the preallocated space past the seal (truncating to the size frees it).
        if preallocatedTo > end { try? fd.truncate(to: end) }
    }

    /// Makes every appended record durable (and, once, the log's directory entry).
    public func sync() throws {
        try sync(upTo: publishedEnd.load(ordering: .acquiring))
    }

    /// Makes the records before byte `target` durable. Concurrent callers share syncs (group
    /// commit): a caller waits while a sync runs and returns if it covered `target`; otherwise
    /// one of the waiters issues the next fdatasync, covering everything appended so far.
    public func sync(upTo target: Int64) throws {
        syncLock.lock()
        while durableEnd < target && syncRunning { syncFinished.wait(syncLock) }
        if durableEnd >= target {
            syncLock.unlock()
            return
        }
        syncRunning = true
        let generation = rollbacks
        let covering = publishedEnd.load(ordering: .acquiring)
        // Eight flushes in a row each under 256 KiB of new records: write log space ahead;
        // a flush megabytes after the last: stop.
        let since = covering - lastSyncCovering
        if since > 0 && since < 256 << 10 {
            smallSyncs += 1
            if smallSyncs == 8 { flushHeavy.store(true, ordering: .relaxed) }
        } else if since > 4 << 20 {
            smallSyncs = 0
            flushHeavy.store(false, ordering: .relaxed)
        }
        lastSyncCovering = covering
        syncLock.unlock()
        var failure: Error?
        do {
            try fd.fdatasync()
            try directoryLock.withLock {
                if !directoryDurable {
                    try FileSystem.fsyncDirectory(path.directoryPart)
                    directoryDurable = true
                }
            }
        } catch { failure = error }
        syncLock.withLock {
            syncRunning = false
            if failure == nil && generation == rollbacks { durableEnd = max(durableEnd, covering) }
            syncFinished.broadcast()
        }
        if let failure { throw failure }
    }

    /// Extends the file with written zeros past `end` (see `fileEnd`); best effort. Their disk
    /// writes start at once, so the next flush finds them under way or done instead of writing
    /// the whole chunk itself before the record it waits for.
    private func writeZerosAhead() {
        let chunk = Int(Self.writeAheadChunk)
        guard let zeros = UnsafeRawPointer(bitPattern: Self.zeroChunkAddress) else { return }
        guard (try? fd.pwrite(zeros, count: chunk, offset: fileEnd)) != nil else { return }
        try? fd.startWriteback(offset: fileEnd, length: Int64(chunk))
        fileEnd += Int64(chunk)
    }

    /// The address of `writeAheadChunk` bytes of zeros shared by every log: a read-only anonymous
    /// mapping, whose pages all map the kernel's zero page when read. Writing zeros ahead then
    /// costs no allocation, memset or page faults per chunk (a fresh 1 MiB buffer per chunk took
    /// 256 page faults and a memset every 253 flushes of 4 KiB). 0 if the mapping failed.
    private static let zeroChunkAddress: Int = {
        let p = mmap(nil, Int(writeAheadChunk), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? 0 : Int(bitPattern: p)
    }()

    /// The appended range whose writeback is due once `chunk` bytes have piled up since the
    /// last start, or nil; the caller starts it with `startWriteback` outside its lock.
    func takeWritebackRange(every chunk: Int64) -> (offset: Int64, count: Int64)? {
        if writebackStarted > end { writebackStarted = 0 } // rolled back
        guard end - writebackStarted >= chunk else { return nil }
        defer { writebackStarted = end }
        return (writebackStarted, end - writebackStarted)
    }

    /// Starts writing a range of the log to disk without waiting; best effort (a later sync
    /// writes whatever this did not).
    func startWriteback(offset: Int64, length: Int64) {
        try? fd.startWriteback(offset: offset, length: length)
    }

    /// Makes a sealed log read-only on disk too.
    /// Drops the write bits, keeping who may read it (the image's readers).
    public func markReadOnly() throws { try fd.chmod(try fd.stat().st_mode & 0o444) }

    /// Gives a new log its image's owner, group and read/write bits. A daemon not running as
    /// root cannot give files away: the log then stays its own, mode 0600 at most.
    static func inheritAccess(_ fd: FileDescriptor, from image: stat) throws {
        if fchown(fd.rawValue, image.st_uid, image.st_gid) != 0 {
            guard errno == EPERM else { throw SystemError.current("chown", fd.path) }
            return
        }
        try fd.chmod(image.st_mode & 0o666)
    }

    /// Cuts the log back to `offset` (an earlier `end`), undoing records whose effect on the
    /// image failed, so the log never claims a change the image did not take.
    public func rollBack(to offset: Int64, lsn: UInt64, records: UInt64, dataBytes: UInt64) throws {
        do {
            try fd.truncate(to: offset)
        } catch let error as SystemError {
            broken = error
            throw error
        }
        end = offset
        fileEnd = offset
        publishedEnd.store(end, ordering: .releasing)
        syncLock.withLock {
            rollbacks += 1
            durableEnd = min(durableEnd, offset)
        }
        preallocatedTo = min(preallocatedTo, offset) // the truncate freed the space past it
        nextLSN = lsn
        recordCount = records
        self.dataBytes = dataBytes
    }

    /// A restorable position for `rollBack`.
    public var position: (end: Int64, lsn: UInt64, records: UInt64, dataBytes: UInt64) {
        (end, nextLSN, recordCount, dataBytes)
    }

    private func append(type: RecordType, offset: UInt64, extent: UInt64, data: UnsafeRawBufferPointer, dataCRC: UInt32,
                        writeAhead: Bool = true) throws {
        if let broken { throw broken }
        precondition(seal == nil, "append to a sealed log \(path)")
        let header = RecordHeader(type: type, lsn: nextLSN, offset: offset, extent: extent,
                                  dataLength: UInt32(data.count), dataCRC: dataCRC)
        header.encode(into: scratch)
        let recordEnd = end + Int64(RecordHeader.size + data.count)
        if preallocating && recordEnd > preallocatedTo {
            let from = max(preallocatedTo, end)
            // Chunks grow with the log (1 MiB up to 32 MiB): a log of a few small writes
            // does not hold 32 MiB until its seal.
            let to = recordEnd + min(Self.preallocationChunk, max(1 << 20, end))
            if (try? fd.fallocate(mode: RFS_FALLOC_KEEP_SIZE, offset: from, length: to - from)) != nil {
                preallocatedTo = to
            } else {
                preallocating = false
            }
        }
        do {
            try fd.pwritev(UnsafeRawBufferPointer(scratch), data, offset: end)
        } catch let error as SystemError {
            // Roll back a partial record so the log never holds a torn record mid-file.
            if (try? fd.truncate(to: end)) == nil { broken = error } else { fileEnd = end }
            preallocatedTo = min(preallocatedTo, end)
            throw error
        }
        end += Int64(RecordHeader.size + data.count)
        fileEnd = max(fileEnd, end)
        if writeAhead && fileEnd - end < RecordHeader.size + RecordHeader.maxDataLength / 16
            && flushHeavy.load(ordering: .relaxed) {
            writeZerosAhead()
        }
        publishedEnd.store(end, ordering: .releasing)
        nextLSN += 1
        recordCount += 1
        if type == .write { dataBytes += UInt64(data.count) }
    }
}
