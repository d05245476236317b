import Foundation
import ReplicaLog
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Reverse replication of a reprotected failover: at each tick it seals every disk's reverse
/// log and replays the sealed logs onto the original site's disks in sequence order (chain
/// and checksums verified first), deleting each log once applied. A log applied but not yet
/// deleted when a crash hits is applied again before any later one: replay is idempotent.
// @unchecked: seals the failover disks' logs that FUSE threads write; state under `lock`.
public final class ReverseShipper: @unchecked Sendable {
    public let disks: [FailoverDisk]
    public let logDirectory: String
    private let lock = Lock()
    private var paused = false
    /// Shipment record for `status` (ReverseShipper+Status.swift), under its own lock so
    /// `status` never waits for a shipment in progress.
    private let recordLock = Lock()
    private var record = ShipmentRecord()

    public init(disks: [FailoverDisk], logDirectory: String) {
        self.disks = disks
        self.logDirectory = logDirectory
    }

    /// The cut: every change from now on is logged, in new chains (old reverse logs go).
    public func start() throws {
        try lock.withLock {
            try FileSystem.mkdirs(logDirectory)
            for name in try FileSystem.list(logDirectory) { try FileSystem.remove(logDirectory + "/" + name) }
            for d in disks { try d.startReverseLog(directory: logDirectory) }
            paused = false
            withRecord { $0 = ShipmentRecord() }
        }
    }

    /// Removes the reverse logs (after a restart they no longer describe every change).
    public func discard() {
        guard let names = try? FileSystem.list(logDirectory) else { return }
        for name in names { try? FileSystem.remove(logDirectory + "/" + name) }
    }

    /// Stops the periodic shipping (a failback's freeze): waits for a shipment in progress.
    public func pause() { lock.withLock { paused = true }; withRecord { $0.paused = true } }
    public func resume() { lock.withLock { paused = false }; withRecord { $0.paused = false } }
    public var isPaused: Bool { lock.withLock { paused } }

    /// Reads or changes the shipment record (ReverseShipper+Status.swift).
    func withRecord<T>(_ body: (inout ShipmentRecord) -> T) -> T { recordLock.withLock { body(&record) } }

    /// Ships everything logged so far to `destination`; returns the data bytes applied. Every
    /// disk's log is sealed at one cut, so the original site's disks are of one moment.
    @discardableResult
    public func ship(to destination: String, options: TargetOptions = TargetOptions()) throws -> Int64 {
        try lock.withLock {
            do {
                let applied = try shipLocked(to: try OriginalSites.open(destination, options: options))
                withRecord { $0.succeeded(bytes: applied, now: Date()) }
                return applied
            } catch {
                withRecord { $0.failed(error, now: Date()) }
                throw error
            }
        }
    }

    private func shipLocked(to destination: any OriginalSite) throws -> Int64 {
        var applied: Int64 = 0
        let cut = try FailoverDisk.withAllLocked(disks) { try disks.map { try $0.rotateReverseLogLocked() } }
        for (d, justSealed) in zip(disks, cut) {
            guard justSealed != nil else {
                throw ReplicaError("disk \(d.name) is not logging for reverse replication: run reprotect")
            }
            let sealed = try SourceLogs.list(in: logDirectory, of: [d.name]).map { try LogScanner.scan($0) }.filter(\.isSealed)
            guard !sealed.isEmpty else { continue }
            applied += try destination.apply(disk: d.name, logs: sealed)
            for scan in sealed { try FileSystem.remove(scan.path) }
        }
        return applied
    }
}
