import Dispatch
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The protected images of one disks-dir and their change logs, opened for one daemon.
/// Opening recovers after a crash (torn tails cut, the interrupted log sealed) and starts
/// a fresh log per image; `rotate` seals all of them at one cut.
// @unchecked: shared with FUSE worker threads; its mutable fields are guarded by `lock`.
public final class DiskSet: @unchecked Sendable {
    public static let lockFileName = ".replicafs.lock"

    public let directory: String
    public let images: [ImageJournal]
    private let lockFile: FileDescriptor
    private let cutLock = Lock()
    private var lastCutID: UInt64
    private var closed = false
    /// Serializes checkpoints (rotation's and the checkpointer's), so a record never goes back.
    let checkpointLock = Lock()
    /// The LSN of each image's saved checkpoint and when it was taken (monotonic ns).
    var checkpointed: [String: (lsn: UInt64, at: UInt64)] = [:]
    let checkpointerStop = StopFlag()
    let checkpointerDone = DispatchSemaphore(value: 0)
    var checkpointerRunning = false

    /// Result of a rotation: the cut's id and the logs it sealed.
    public struct Rotation: Codable, Sendable {
        public var cutID: UInt64
        public var sealed: [String]
    }

    private init(directory: String, images: [ImageJournal], lockFile: FileDescriptor, lastCutID: UInt64) {
        self.directory = directory
        self.images = images
        self.lockFile = lockFile
        self.lastCutID = lastCutID
    }

    deinit { lockFile.close() }

    /// Entries of the disks directory that are not served, with the reason (`DiskEntries`).
    public private(set) var skipped: [DiskEntries.Skipped] = []

    /// The image names in `directory` by the rule of `DiskEntries`: regular files, or symlinks
    /// to regular files inside it; not hidden, not logs.
    public static func imageNames(in directory: String) throws -> [String] {
        try DiskEntries.scan(FileSystem.realPath(directory)).images
    }

    /// Opens every image in `directory` for logging. Refuses (with one clear error, before
    /// changing anything) a missing directory, a second daemon, an unreadable image and a
    /// foreign or corrupt log.
    public static func open(directory rawDirectory: String) throws -> DiskSet {
        guard FileSystem.exists(rawDirectory) else { throw ReplicaError("disks directory \(rawDirectory) does not exist") }
        guard FileSystem.isDirectory(rawDirectory) else { throw ReplicaError("\(rawDirectory) is not a directory") }
        let directory = try FileSystem.realPath(rawDirectory)
        // Never through a symlink: the disks directory may be writable by others, and O_CREAT
        // on a planted symlink would create its target as root.
        let lockFile: FileDescriptor
        do {
            lockFile = try FileDescriptor.open(directory + "/" + lockFileName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK, mode: 0o600)
        } catch let e as SystemError where e.errno == ELOOP {
            throw ReplicaError("refusing \(directory)/\(lockFileName): it is a symlink (remove it)")
        }
        guard try lockFile.tryLockExclusive() else {
            lockFile.close()
            throw ReplicaError("disks directory \(directory) is already served by another replicafs daemon")
        }
        do {
            let entries = try DiskEntries.scan(directory)
            let names = entries.images
            guard !names.isEmpty else {
                let skipped = entries.skipped.isEmpty ? "" : " (skipped: " + entries.skipped.map(\.description).joined(separator: ", ") + "; \(DiskEntries.rule))"
                throw ReplicaError("no disk images in \(directory)\(skipped)")
            }
            let allFiles = try FileSystem.list(directory)
            // Validate every image and its logs before touching any of them.
            var plans: [(name: String, fd: FileDescriptor, latest: LogScan?)] = []
            var lastCut: UInt64 = 0
            // Image descriptors not yet owned by a journal are closed on any failure.
            var handedOff = 0
            defer { plans[handedOff...].forEach { $0.fd.close() } }
            for name in names {
                guard name.utf8.count <= LogName.maxImageNameBytes else {
                    throw ReplicaError("image name too long (\(name.utf8.count) bytes, at most \(LogName.maxImageNameBytes) so that its log names fit in 255): \(name)")
                }
                let path = directory + "/" + name
                let fd: FileDescriptor
                do {
                    fd = try FileDescriptor.open(path, O_RDWR)
                } catch let e as SystemError {
                    throw ReplicaError("cannot open image \(path): \(e.message)")
                }
                do {
                    try DiskEntries.checkOpened(fd, path: path, directory: directory)
                } catch {
                    fd.close()
                    throw error
                }
                let latest: LogScan?
                do {
                    latest = try latestLog(of: name, in: directory, files: allFiles)
                } catch {
                    fd.close()
                    throw error
                }
                if let seal = latest?.seal { lastCut = max(lastCut, seal.cutID) }
                plans.append((name, fd, latest))
            }
            var journals: [ImageJournal] = []
            var checkpoints: [String: (lsn: UInt64, at: UInt64)] = [:]
            for plan in plans {
                let journal = try startJournal(plan.name, image: plan.fd, latest: plan.latest, directory: directory)
                journals.append(journal)
                handedOff += 1
                checkpoints[plan.name] = (journal.activeLog.firstLSN, Self.monotonicNanos())
            }
            let set = DiskSet(directory: directory, images: journals, lockFile: lockFile, lastCutID: lastCut)
            set.skipped = entries.skipped
            set.checkpointed = checkpoints
            set.startCheckpointer()
            return set
        } catch {
            lockFile.close()
            throw error
        }
    }

    /// Finds and checks the chain of `name`'s logs; returns a full scan of the newest one.
    private static func latestLog(of name: String, in directory: String, files: [String]) throws -> LogScan? {
        var logs = files.compactMap { f -> (String, UInt64)? in
            guard let p = LogName.parse(f), p.image == name else { return nil }
            return (f, p.sequence)
        }.sorted { $0.1 < $1.1 }
        guard var newest = logs.last else { return nil }
        var scan = try LogScanner.scan(directory + "/" + newest.0)
        if !scan.isSealed, scan.recordCount == 0, logs.count >= 2 {
            // A rotation interrupted between creating the next log and sealing this one: the
            // next log holds only its header; drop it and recover the one it was to follow.
            let previous = logs[logs.count - 2]
            let prevScan = try LogScanner.scan(directory + "/" + previous.0)
            if !prevScan.isSealed {
                try FileSystem.remove(directory + "/" + newest.0)
                logs.removeLast()
                newest = previous
                scan = prevScan
            }
        }
        for (file, seq) in logs {
            let path = directory + "/" + file
            let header = try readHeader(path)
            if header.imageName != name {
                throw ReplicaError("\(path): foreign log: it belongs to image '\(header.imageName)', not '\(name)'")
            }
            if header.sequence != seq {
                throw ReplicaError("\(path): header says sequence \(header.sequence), file name says \(seq)")
            }
            if header.chainID != scan.header.chainID {
                throw ReplicaError("\(path): foreign log: chain \(header.chainHex) differs from the newest log's \(scan.header.chainHex)")
            }
        }
        if case .corrupt(let offset, let reason) = scan.tail {
            throw ReplicaError("\(scan.path): corrupt record at byte \(offset) (\(reason)); valid records follow, so this is damage, not a torn tail: move the log aside and resync")
        }
        return scan
    }

    static func readHeader(_ path: String) throws -> LogHeader {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        var bytes = [UInt8](repeating: 0, count: LogHeader.size)
        let n = try bytes.withUnsafeMutableBytes { try fd.pread(into: $0.baseAddress!, count: LogHeader.size, offset: 0) }
        return try bytes.withUnsafeBytes { try LogHeader.decode(UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: path) }
    }

    private static func startJournal(_ name: String, image: FileDescriptor, latest: LogScan?, directory: String) throws -> ImageJournal {
        var recovered = false
        var chainID: [UInt8]
        var sequence: UInt64 = 1
        var firstLSN: UInt64 = 1
        if let scan = latest {
            chainID = scan.header.chainID
            sequence = scan.header.sequence + 1
            firstLSN = scan.nextLSN
            // The previous daemon died: cut the torn tail first (nothing in it was acknowledged).
            let old = scan.isSealed ? nil : try ChangeLog.reopenForRecovery(scan: scan)
            // Bring the image up to the log: replay what was logged since the last checkpoint.
            // No usable checkpoint (none yet, another chain's, or past the log's end): after a
            // clean shutdown the image is synced; after a crash the whole last log is replayed.
            let saved = ImageCheckpoint.load(disksDir: directory, image: name)
            let checkpoint = saved.flatMap { $0.chain == scan.header.chainHex && $0.lsn <= scan.nextLSN ? $0.lsn : nil }
            if let saved, checkpoint == nil {
                DaemonLog.logger.warning("\(name): ignoring checkpoint record (chain \(saved.chain), LSN \(saved.lsn)): it does not match the log chain \(scan.header.chainHex) ending before LSN \(scan.nextLSN)")
            }
            let from = checkpoint ?? (scan.isSealed ? scan.nextLSN : scan.header.firstLSN)
            if from < scan.nextLSN {
                let replayed = try CheckpointReplay.replay(logs: CheckpointReplay.logPaths(of: name, in: directory), from: from, onto: image)
                DaemonLog.logger.notice("\(name): replayed \(replayed.records) records (\(replayed.dataBytes) data bytes) from LSN \(from) in \(replayed.logs) logs onto the image")
                if let gap = replayed.gap {
                    // The image may lack changes the logs lost: the replica needs a resync.
                    DaemonLog.logger.error("\(name): crash recovery incomplete: \(gap)")
                    recovered = true
                }
            }
            if let old {
                try old.appendMarker(Marker(kind: .uncleanShutdown, cutID: 0, timeNanos: Clock.nowNanos(),
                                            label: tornNote(scan)))
                try old.seal(reason: .recovered, cutID: 0)
                try old.sync()
                try old.markReadOnly()
                firstLSN = old.nextLSN
                recovered = true
            }
        } else {
            chainID = LogHeader.newChainID()
        }
        let log = try ChangeLog.create(
            path: directory + "/" + LogName.make(image: name, sequence: sequence),
            header: LogHeader(imageName: name, chainID: chainID, sequence: sequence, firstLSN: firstLSN,
                              createdNanos: Clock.nowNanos(), imageSize: UInt64(max(0, try image.size()))),
            image: image)
        try log.sync()
        // Every change before the new log is on the synced image (replayed, or synced at the
        // clean shutdown): the first checkpoint of this mount.
        try image.fdatasync()
        try ImageCheckpoint(chain: log.header.chainHex, lsn: firstLSN).save(disksDir: directory, image: name)
        return ImageJournal(name: name, directory: directory, image: image, log: log, recoveredFromCrash: recovered)
    }

    private static func tornNote(_ scan: LogScan) -> String {
        if case .torn(let offset, let reason) = scan.tail {
            return "torn tail cut at byte \(offset) (\(scan.fileSize - offset) bytes: \(reason))"
        }
        return "no torn tail"
    }

    public func journal(named name: String) -> ImageJournal? { images.first { $0.name == name } }

    /// Seals the active log of every image (or of the images named in `only`: one VM's disks)
    /// at one cut and opens the next ones. Writers wait only while the new log files are
    /// created; the sealed logs are synced after.
    public func rotate(only names: Set<String>? = nil) throws -> Rotation {
        try cutLock.withLock {
            guard !closed else { throw ReplicaError("disk set \(directory) is closed") }
            lastCutID += 1
            let cut = lastCutID
            let cutting = names.map { n in images.filter { n.contains($0.name) } } ?? images
            cutting.forEach { $0.lockForCut() }
            var sealedLogs: [ChangeLog] = []
            var failure: Error?
            for journal in cutting {
                do {
                    sealedLogs.append(try journal.cutLocked(cutID: cut, reason: .rotation))
                } catch {
                    failure = error
                    break
                }
            }
            cutting.forEach { $0.unlockAfterCut() }
            for (journal, log) in zip(cutting, sealedLogs) {
                try log.sync()
                journal.sealedLogIsDurable(log)
                try log.markReadOnly()
            }
            if let failure { throw failure }
            // A checkpoint past the cut before anyone ships (and deletes) the sealed logs: a
            // crash recovery then never needs a log that is gone.
            FaultPoint.reach("rotate-before-checkpoint")
            try checkpoint(cutting)
            return Rotation(cutID: cut, sealed: sealedLogs.map(\.path))
        }
    }

    /// Seals every log with a clean-shutdown marker and syncs logs and images.
    public func close() throws {
        try cutLock.withLock {
            guard !closed else { return }
            closed = true
            stopCheckpointer()
            lastCutID += 1
            var firstError: Error?
            for journal in images {
                do {
                    guard let end = try journal.closeCleanly(cutID: lastCutID) else { continue }
                    try ImageCheckpoint(chain: journal.activeLog.chain, lsn: end).save(disksDir: directory, image: journal.name)
                } catch { firstError = firstError ?? error }
            }
            if let firstError { throw firstError }
        }
    }

    public var states: [ImageState] { images.map(\.state) }
}
