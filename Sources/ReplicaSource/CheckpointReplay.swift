import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Crash recovery of one image: the records logged since its last checkpoint are applied onto
/// the image, in LSN order, then the image is synced. Every change acknowledged by an fsync
/// through the mount was in a durable log, so afterwards it is on the durable image too.
/// Idempotent: the image holds the checkpoint's state plus any subset of the later changes,
/// and applying all of them in order from an LSN no later than the checkpoint's gives the same
/// bytes and size whatever that subset was (each record sets its bytes or the size outright).
enum CheckpointReplay {
    struct Outcome {
        var logs = 0
        var records: UInt64 = 0
        var dataBytes: UInt64 = 0
        /// Why some records since the checkpoint could not be replayed (a log missing or damaged).
        var gap: String?
    }

    /// Replays onto `image` every record with an LSN of at least `from` found in `logs` (the
    /// image's logs in sequence order; the newest already cut at its torn tail), then syncs it.
    static func replay(logs: [String], from: UInt64, onto image: FileDescriptor) throws -> Outcome {
        var outcome = Outcome()
        let headers = try logs.map { try DiskSet.readHeader($0) }
        // The first log that may hold LSN `from`: the last one starting at or before it.
        var start = 0
        for (i, h) in headers.enumerated() where h.firstLSN <= from { start = i }
        guard start < logs.count else { return outcome }
        if headers[start].firstLSN > from {
            outcome.gap = "records from LSN \(from) to \(headers[start].firstLSN - 1) are in no log left"
        }
        var expected: UInt64?
        for i in start..<logs.count {
            if let expected, headers[i].firstLSN != expected, outcome.gap == nil {
                outcome.gap = "\(logs[i]) starts at LSN \(headers[i].firstLSN), the log before it ends before \(expected)"
            }
            let scan = try LogScanner.scan(logs[i]) { header, data in
                guard header.lsn >= from else { return }
                try LogApplier.applyRecord(header, data, to: image)
                if header.type != .seal && header.type != .marker { outcome.records += 1 }
                if header.type == .write { outcome.dataBytes += header.extent }
            }
            outcome.logs += 1
            if scan.tail != .clean && i < logs.count - 1 && outcome.gap == nil {
                outcome.gap = "\(logs[i]) ends in a damaged record at byte \(scan.validEnd)"
            }
            expected = scan.nextLSN
        }
        try image.fsync()
        return outcome
    }

    /// The paths of `image`'s logs in `directory`, in sequence order.
    static func logPaths(of image: String, in directory: String) throws -> [String] {
        try FileSystem.list(directory).compactMap { f -> (String, UInt64)? in
            guard let p = LogName.parse(f), p.image == image else { return nil }
            return (directory + "/" + f, p.sequence)
        }.sorted { $0.1 < $1.1 }.map(\.0)
    }
}
