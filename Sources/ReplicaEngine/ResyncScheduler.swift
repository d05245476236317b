import Foundation
import ReplicaSource
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Decides when a protected VM needs a resync, and when it may run.
///
/// Triggers: an unclean shutdown of the previous daemon, or an image changed outside the
/// mount (both found when the disk set is opened), a failed log write, pending logs over the
/// policy's share of the disk, a chain the target refused, and the operator. A requirement is
/// kept on disk (`<disks-dir>/.replicafs/resync/<vm>.json`) so a restart does not forget it;
/// until it is met, ordinary cycles of the VM wait: no point is made from a replica that may
/// have drifted from the source. Automatic resyncs run inside the policy's window (off-hours
/// by default, as the seeds do); `resync --now` runs at once.
// @unchecked: reads the DiskSet the FUSE threads write through; its own state is under `lock`.
public final class ResyncScheduler: @unchecked Sendable {
    public static let defaultWindow = "18:30-06:00"
    public static let defaultThreshold = 50.0

    /// A daily window of local time, or always.
    public struct Window: Equatable, Sendable {
        /// Minutes after midnight; nil bounds mean always.
        public var start: Int?
        public var end: Int?

        public init(_ text: String) throws {
            if text == "always" { start = nil; end = nil; return }
            let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            func minutes(_ s: Substring) -> Int? {
                let hm = s.split(separator: ":", omittingEmptySubsequences: false)
                guard hm.count == 2, hm[0].count <= 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]),
                      (0..<24).contains(h), (0..<60).contains(m) else { return nil }
                return h * 60 + m
            }
            guard parts.count == 2, let s = minutes(parts[0]), let e = minutes(parts[1]), s != e else {
                throw ReplicaError("bad resync window '\(text)': use HH:MM-HH:MM (local time, e.g. 18:30-06:00) or always")
            }
            start = s
            end = e
        }

        public func contains(_ date: Date) -> Bool {
            guard let start, let end else { return true }
            let c = Calendar.current.dateComponents([.hour, .minute], from: date)
            let now = (c.hour ?? 0) * 60 + (c.minute ?? 0)
            return start < end ? (now >= start && now < end) : (now >= start || now < end)
        }
    }

    /// Why a VM needs a resync; `now` skips the window.
    public struct Requirement: Codable, Sendable {
        public var reason: String
        public var sinceNanos: UInt64
        public var now: Bool
    }

    /// An image's identity and last change, recorded at clean shutdown and compared at the next
    /// open: a difference means something wrote it while no daemon logged its writes.
    struct Fingerprint: Codable, Equatable {
        public var size: Int64
        var mtimeNanos: Int64
        var inode: UInt64

        init(size: Int64, mtimeNanos: Int64, inode: UInt64) {
            self.size = size
            self.mtimeNanos = mtimeNanos
            self.inode = inode
        }

        public init(_ st: stat) {
            size = Int64(st.st_size)
            mtimeNanos = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
            inode = UInt64(st.st_ino)
        }
    }

    public let disksDir: String
    private let lock = Lock()
    private var requirements: [String: Requirement] = [:]
    private var lastAttempt: [String: Double] = [:]
    private var lastThresholdCheck: [String: Double] = [:]
    private var reports: [String: ResyncReport] = [:]
    /// Requirements whose file could not be written (the disks-dir's filesystem full, as when
    /// a log write failed for want of space): held in memory and written again at each look.
    /// Without this, `requirement` took the missing file for an `unprotect` and forgot them.
    private var unsaved: Set<String> = []
    /// Seconds between attempts of a resync that failed.
    static let retrySeconds = 10.0

    public var directory: String { disksDir + "/.replicafs/resync" }
    public static func requirementPath(disksDir: String, vm: String) -> String { disksDir + "/.replicafs/resync/" + vm + ".json" }
    var fingerprintPath: String { disksDir + "/.replicafs/fingerprints.json" }

    /// Loads kept requirements and looks for mount-time triggers: journals recovered after a
    /// crash, and images whose fingerprint differs from the one recorded at clean shutdown.
    public init(disks: DiskSet) {
        disksDir = disks.directory
        for name in (try? FileSystem.list(directory)) ?? [] where name.hasSuffix(".json") {
            if let bytes = try? FileSystem.readFile(directory + "/" + name),
               let r = try? JSONDecoder().decode(Requirement.self, from: Data(bytes)) {
                requirements[String(name.dropLast(5))] = r
            }
        }
        var reasons: [String: String] = [:]
        for j in disks.images where j.recoveredFromCrash {
            reasons[j.name] = "the previous mount daemon did not shut down cleanly (\(j.name))"
        }
        if let bytes = try? FileSystem.readFile(fingerprintPath),
           let recorded = try? JSONDecoder().decode([String: Fingerprint].self, from: Data(bytes)) {
            for j in disks.images where reasons[j.name] == nil {
                guard let before = recorded[j.name], let st = try? j.image.stat() else { continue }
                if Fingerprint(st) != before {
                    reasons[j.name] = "image \(j.name) changed outside the mount (size, mtime or inode differ from the clean shutdown)"
                }
            }
        }
        // A crash after this point must not compare against a stale record.
        try? FileSystem.remove(fingerprintPath)
        for vm in ProtectedVM.all(disksDir: disksDir) {
            guard let reason = vm.disks.compactMap({ reasons[$0] }).first else { continue }
            // Without a replica yet, the initial copy (or its resume) covers it.
            if let store = try? openTargetStore(vm.target, options: vm.storeOptions), !store.hasVM(vm.name) { continue }
            require(vm.name, reason: reason)
            DaemonLog.logger.warning("\(vm.name): resync required: \(reason)")
        }
    }

    /// Records every image's fingerprint; called once writes have stopped at clean shutdown.
    /// An image whose chain broke (its log deleted, the image changed outside the mount, a
    /// failed log write not yet resynced) gets
    /// no fingerprint of its changed state: its VMs are marked for a resync, kept on disk, and
    /// its recorded fingerprint is one no image matches, so the next mount sees the change too.
    public func recordFingerprints(_ disks: DiskSet) throws {
        var intact: [String] = []
        var broken: [String: String] = [:]
        for j in disks.images {
            if let reason = j.chainBreak ?? j.checkChainNow() ?? j.state.logError.map({ "a log write failed on \(j.name): \($0)" }) {
                broken[j.name] = reason
            } else {
                intact.append(j.name)
            }
        }
        try Self.recordFingerprints(disksDir: disksDir, images: intact)
        guard !broken.isEmpty else { return }
        try Self.forgetFingerprints(disksDir: disksDir, images: Array(broken.keys))
        for vm in ProtectedVM.all(disksDir: disksDir) {
            guard let reason = vm.disks.compactMap({ broken[$0] }).first else { continue }
            // Without a replica yet, the initial copy (or its resume) covers it.
            if let store = try? openTargetStore(vm.target, options: vm.storeOptions), !store.hasVM(vm.name) { continue }
            require(vm.name, reason: reason)
            DaemonLog.logger.warning("\(vm.name): resync required: \(reason)")
        }
    }

    /// Records, for `images`, a fingerprint no image matches: the next open sees them as changed.
    static func forgetFingerprints(disksDir: String, images: [String]) throws {
        let path = disksDir + "/.replicafs/fingerprints.json"
        var all = (try? FileSystem.readFile(path)).flatMap { try? JSONDecoder().decode([String: Fingerprint].self, from: Data($0)) } ?? [:]
        for name in images { all[name] = Fingerprint(size: -1, mtimeNanos: -1, inode: 0) }
        let data = try JSONEncoder().encode(all)
        try FileSystem.mkdirs(disksDir + "/.replicafs")
        try data.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }

    /// Records the fingerprints of `images` in `disksDir` (the others recorded are kept): for
    /// whoever wrote them with the replica's knowledge, as a failback does.
    public static func recordFingerprints(disksDir: String, images: [String]) throws {
        let path = disksDir + "/.replicafs/fingerprints.json"
        var all = (try? FileSystem.readFile(path)).flatMap { try? JSONDecoder().decode([String: Fingerprint].self, from: Data($0)) } ?? [:]
        for name in images { all[name] = Fingerprint(try FileSystem.stat(disksDir + "/" + name)) }
        let data = try JSONEncoder().encode(all)
        try FileSystem.mkdirs(disksDir + "/.replicafs")
        try data.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }

    /// The VM's requirement; one whose file is gone (`unprotect` removes it) is forgotten.
    public func requirement(_ vm: String) -> Requirement? {
        lock.withLock {
            if let r = requirements[vm], unsaved.contains(vm) {
                if (try? save(vm, r)) != nil { unsaved.remove(vm) }
            } else if requirements[vm] != nil && !FileSystem.exists(directory + "/" + vm + ".json") {
                requirements[vm] = nil
            }
            return requirements[vm]
        }
    }

    /// Marks a VM as needing a resync (a first reason stays; `now` is added to it).
    func require(_ vm: String, reason: String, now: Bool = false) {
        lock.withLock {
            var r = requirements[vm] ?? Requirement(reason: reason, sinceNanos: Clock.nowNanos(), now: now)
            r.now = r.now || now
            requirements[vm] = r
            if now { lastAttempt[vm] = nil }
            do {
                try save(vm, r)
                unsaved.remove(vm)
            } catch {
                // Held in memory and saved again at each look (`requirement`); a restart before
                // that would forget it.
                if !unsaved.contains(vm) { DaemonLog.logger.error("\(vm): cannot save the resync requirement (\(reason)): \(error)") }
                unsaved.insert(vm)
            }
        }
    }

    /// The resync is done (the store holds it): forget the requirement.
    func satisfied(_ vm: String, report: ResyncReport) {
        lock.withLock {
            requirements[vm] = nil
            reports[vm] = report
            guard unsaved.remove(vm) == nil else { return } // never written
            do {
                try FileSystem.remove(directory + "/" + vm + ".json")
            } catch {
                // Left behind, it makes the next daemon resync once more: safe, but say so.
                DaemonLog.logger.error("\(vm): cannot remove the satisfied resync requirement: \(error)")
            }
        }
    }

    /// Writes `vm`'s requirement file. Caller holds the lock.
    private func save(_ vm: String, _ r: Requirement) throws {
        try FileSystem.mkdirs(directory)
        let data = try JSONEncoder().encode(r)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(directory + "/" + vm + ".json", $0) }
    }

    public func lastReport(_ vm: String) -> ResyncReport? { lock.withLock { reports[vm] } }

    /// False while a failed attempt is younger than the retry interval.
    func mayAttempt(_ vm: String, now: Double) -> Bool {
        lock.withLock { lastAttempt[vm].map { now - $0 >= Self.retrySeconds } ?? true }
    }

    func noteAttempt(_ vm: String, now: Double) { lock.withLock { lastAttempt[vm] = now } }

    /// Runtime triggers: a failed log write, or, while replication is failing (`behind`),
    /// pending logs over the threshold (checked once a second). Logs that pile up between
    /// successful cycles (a busy small disk, the logs of an initial copy) ship normally: the
    /// threshold is for logs that accumulate because they cannot be shipped.
    func checkTriggers(_ vm: ProtectedVM, journals: [ImageJournal], behind: Bool, now: Double) {
        guard requirement(vm.name) == nil else { return }
        for j in journals {
            if let error = j.state.logError {
                require(vm.name, reason: "a log write failed on \(j.name): \(error)")
                return
            }
        }
        let due = lock.withLock { () -> Bool in
            guard now - (lastThresholdCheck[vm.name] ?? 0) >= 1 else { return false }
            lastThresholdCheck[vm.name] = now
            return true
        }
        guard due, behind else { return }
        let percent = vm.policy.resyncThreshold ?? Self.defaultThreshold
        for j in journals {
            guard let size = try? j.image.size(), size > 0 else { continue }
            var pending = j.state.logBytes
            for path in (try? j.sealedLogs()) ?? [] { pending += (try? FileSystem.stat(path).st_size).map(Int64.init) ?? 0 }
            if Double(pending) * 100 > percent * Double(size) {
                require(vm.name, reason: "\(pending) bytes of logs pending for \(j.name), over \(percent)% of its \(size) bytes")
                return
            }
        }
    }

    /// A commit the target refused because the chain broke (or belongs to other logs).
    func noteCommitError(_ vm: String, _ error: Error) {
        if let e = error as? ReplicaError, e.kind == .resyncRequired { require(vm, reason: "the target refused the logs: \(e)") }
    }

    /// Whether an automatic resync may start now under `policy`.
    static func windowOpen(_ policy: ReplicationPolicy, _ r: Requirement, at date: Date = Date()) -> Bool {
        if r.now { return true }
        let window = (try? Window(policy.resyncWindow ?? defaultWindow)) ?? (try! Window(defaultWindow))
        return window.contains(date)
    }
}
