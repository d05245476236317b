import Dispatch
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints: the images are made durable here, not at each fsync through the mount (which
/// makes only the log durable). Taken by time and by log volume on a thread of their own, at
/// each rotation (before its sealed logs can be shipped and deleted) and at clean shutdown.
/// Each one syncs the logs, then the image, then records its LSN (`ImageCheckpoint`).
extension DiskSet {
    /// Seconds between checkpoints of an image that changed (`REPLICAFS_CHECKPOINT_SECONDS`, default 30).
    static let checkpointInterval: Double = environmentNumber("REPLICAFS_CHECKPOINT_SECONDS") ?? 30
    /// Log bytes after which an image is checkpointed early (`REPLICAFS_CHECKPOINT_MIB`, default 256 MiB):
    /// bounds the replay after a crash and the dirty image pages a checkpoint has to write.
    static let checkpointBytes = UInt64(min(environmentNumber("REPLICAFS_CHECKPOINT_MIB") ?? 256, 1e9) * 1048576)

    static func environmentNumber(_ name: String) -> Double? {
        getenv(name).flatMap { Double(String(cString: $0)) }.flatMap { $0 >= 0 && $0.isFinite ? $0 : nil }
    }

    static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Makes each journal's image durable and records the checkpoint. Serialized, and a record
    /// only moves forward (a slower checkpoint never overwrites a later one).
    func checkpoint(_ journals: [ImageJournal]) throws {
        try checkpointLock.withLock {
            for journal in journals {
                let lsn = try journal.makeImageDurable()
                let now = Self.monotonicNanos()
                if lsn > checkpointed[journal.name]?.lsn ?? 0 {
                    try ImageCheckpoint(chain: journal.activeLog.chain, lsn: lsn).save(disksDir: directory, image: journal.name)
                }
                checkpointed[journal.name] = (max(lsn, checkpointed[journal.name]?.lsn ?? 0), now)
            }
        }
    }

    /// The images whose checkpoint is due: changed and older than the interval, or with more
    /// log volume than `checkpointBytes` since the last one.
    func imagesDueForCheckpoint() -> [ImageJournal] {
        let interval = UInt64(min(Self.checkpointInterval, 1e9) * 1e9)
        return checkpointLock.withLock {
            let now = Self.monotonicNanos()
            return images.filter { j in
                guard let last = checkpointed[j.name] else { return true }
                if j.bytesSinceCheckpoint >= Self.checkpointBytes { return true }
                return now >= last.at + interval && j.nextLSN > last.lsn
            }
        }
    }

    /// Starts the checkpoint thread (a plain dispatch thread: it blocks in fdatasync).
    func startCheckpointer() {
        checkpointerRunning = true
        let stop = checkpointerStop
        let done = checkpointerDone
        DispatchQueue(label: "replicafs-checkpointer").async { [weak self] in
            defer { done.signal() }
            var lastError: String?
            while !stop.isStopped {
                usleep(100_000)
                guard let self, !stop.isStopped else { return }
                let due = self.imagesDueForCheckpoint()
                guard !due.isEmpty else { continue }
                do {
                    try self.checkpoint(due)
                    lastError = nil
                } catch {
                    // Retried at the next tick; the logs hold everything meanwhile.
                    let text = "\(error)"
                    if text != lastError { DaemonLog.logger.error("checkpoint failed (retrying): \(text)") }
                    lastError = text
                }
            }
        }
    }

    /// Stops the checkpoint thread and waits for it. Called once, at close.
    func stopCheckpointer() {
        guard checkpointerRunning else { return }
        checkpointerRunning = false
        checkpointerStop.stop()
        checkpointerDone.wait()
    }
}
