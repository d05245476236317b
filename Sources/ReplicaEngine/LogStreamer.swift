import Foundation
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Sends the active change logs of VMs replicating to a receiver while they are written, so
/// a cut has only the log's tail left to send: the cycle's upload resumes where the stream
/// left off (docs/secondary-site.md, "Streaming the active log"). Without it a cycle sent the
/// whole log after the cut, and with writes going on a write waited for up to two uploads.
///
/// Only a log's final bytes go (`ImageJournal.activeLogFinal`: before any record a failed image
/// write could still take back), so what the receiver holds is that log's prefix through a
/// rollback and the seal; they are not synced first (a crash of the host can lose them, and
/// the resync every mount after a crash requires discards what was staged). Best effort: a failure is logged and the
/// next pass asks the receiver what it holds; the cycle's own upload is what a point waits for.
// @unchecked: `vms` and `held` are only touched under `lock`; `sent` is set before the thread starts.
final class LogStreamer: @unchecked Sendable {
    /// A VM the replicator found in step with its receiver, and that receiver.
    struct Entry {
        var vm: ProtectedVM
        var store: any LogStreaming
    }

    let disks: DiskSet
    /// Counts the bytes a pass sent for a VM (its `bytesSent`); set before the first pass.
    var sent: (String, Int64) -> Void = { _, _ in }
    private let lock = Lock()
    private var vms: [String: Entry] = [:]
    /// What the receiver holds of each streamed log (by path); absent: ask it.
    private var held: [String: Int64] = [:]
    /// Held while a pass sends and while the replicator cuts: a log is never sent once sealed
    /// by a cycle, so the cycle's upload of it has the receiver to itself.
    private let sendLock = Lock()
    /// Less than this since the last send waits for the next pass (an idle or slow VM makes
    /// no requests of its own).
    static let minimumBytes: Int64 = 256 << 10
    /// Time between passes.
    static let interval: useconds_t = 50_000
    init(disks: DiskSet) {
        self.disks = disks
    }

    /// Streams `vm`'s logs to `store` from now on when it is a receiver; nil stops it.
    func publish(_ vm: ProtectedVM, store: (any TargetStore)?) {
        let entry = store.flatMap { Self.entry(vm, $0) }
        lock.withLock { vms[vm.name] = entry }
    }

    /// Gives a VM already streaming the store opened with its current policy (a changed
    /// bandwidth limit is another limiter): the next request goes through it.
    func refresh(_ vm: ProtectedVM, store: any TargetStore) {
        let entry = Self.entry(vm, store)
        lock.withLock { if vms[vm.name] != nil { vms[vm.name] = entry } }
    }

    /// `vm` streaming to `store` when the store takes streamed logs (a receiver, throttled or not).
    private static func entry(_ vm: ProtectedVM, _ store: any TargetStore) -> Entry? {
        (((store as? ThrottledStore)?.inner ?? store) as? any LogStreaming).map { Entry(vm: vm, store: $0) }
    }

    /// Stops streaming every VM not in `names` (unprotected).
    func keep(only names: Set<String>) {
        lock.withLock { vms = vms.filter { names.contains($0.key) } }
    }

    /// Runs `cut` (a rotation) with no pass sending meanwhile.
    func aroundCut<T>(_ cut: () throws -> T) rethrows -> T {
        try sendLock.withLock(cut)
    }

    /// Forgets sealed logs (a cycle uploads them itself); whether any was sent.
    @discardableResult
    func forget(_ paths: some Sequence<String>) -> Bool {
        lock.withLock { paths.reduce(false) { sent, path in held.removeValue(forKey: path) != nil || sent } }
    }

    /// Runs passes until `running` says stop.
    func run(while running: () -> Bool) {
        while running() {
            pass()
            usleep(Self.interval)
        }
    }

    /// Sends each published VM's active logs up to their final bytes.
    func pass() {
        let entries = lock.withLock { Array(vms.values) }
        for entry in entries {
            for disk in entry.vm.disks {
                guard let journal = disks.journal(named: disk) else { continue }
                // Catch up a request at a time, letting a cut in between, each through the
                // store as last published (a changed limit applies from the next request).
                while let current = lock.withLock({ vms[entry.vm.name] }), sendLock.withLock({ send(journal, of: current) }) {}
            }
        }
        lock.withLock {
            // Logs sealed by other rotations (initial copy, resync, `log rotate`) and shipped.
            if held.count > 4 * max(1, disks.images.count) { held = held.filter { FileSystem.exists($0.key) } }
        }
    }

    /// Sends one request of the journal's active log, up to its final bytes; whether there may
    /// be more to send now.
    private func send(_ journal: ImageJournal, of entry: Entry) -> Bool {
        let (path, end) = journal.activeLogEnd
        let known = lock.withLock { held[path] }
        guard end - (known ?? 0) >= Self.minimumBytes else { return false }
        do {
            let final = journal.activeLogFinal()
            // Cut by a rotation this lock does not hold off: that log is the cycle's now.
            guard final.path == path else { return false }
            let name = (path as NSString).lastPathComponent
            let result = try entry.store.stream(vm: entry.vm.name, name: name, path: path, from: known, to: final.end,
                                                compress: entry.vm.policy.compress)
            lock.withLock { held[path] = result.held }
            if result.sent > 0 { sent(entry.vm.name, result.sent) }
            return result.held < final.end && result.held > (known ?? 0)
        } catch {
            lock.withLock { held[path] = nil }
            DaemonLog.logger.debug("\(entry.vm.name): streaming \(path) ahead of its cut: \(error)")
            return false
        }
    }
}
