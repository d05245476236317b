import Foundation
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// This host's record of the VMs it knows, so that every command can take a VM name alone:
/// where the primary's disks are, which store holds the replica, which named policy it uses,
/// and a failover started here. One JSON file per VM in `<state>/vms/<vm>.json`, written
/// atomically by `protect`, the mount daemon and `failover`; named policies sit beside it in
/// `<state>/policies` (`PolicyLibrary`). The state directory is $REPLICAFS_STATE_DIR, else
/// `$REPLICAFS_RUN_DIR/state` (tests stay isolated), else /var/lib/replicafs (root) or
/// ~/.local/state/replicafs. Files are read only when owned by the user that runs replicafs
/// and writable by no one else (they name directories root writes to).
public struct VMRegistry: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var vm: String
        /// The primary's disks directory on this host (nil at a DR site that only holds the store).
        public var disksDir: String?
        /// The target store location.
        public var target: String
        /// The named policy last applied (`protect --policy`, `policy apply`).
        public var policy: String?
        /// A failover of the VM started on this host.
        public var failover: Failover?

        public struct Failover: Codable, Sendable, Equatable {
            public var kind: String
            public var mountpoint: String
            /// How the failover opened its store (PKI, object-store access), so `failover
            /// remount` (the boot unit's `--all`) opens it the same way without options.
            public var options: TargetOptions?
            public init(kind: String, mountpoint: String, options: TargetOptions? = nil) {
                self.kind = kind
                self.mountpoint = mountpoint
                self.options = options
            }
        }

        public init(vm: String, disksDir: String?, target: String, policy: String? = nil, failover: Failover? = nil) {
            self.vm = vm
            self.disksDir = disksDir
            self.target = target
            self.policy = policy
            self.failover = failover
        }
    }

    public let directory: String
    public var vmDirectory: String { directory + "/vms" }

    public init(directory: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let dir = directory ?? environment["REPLICAFS_STATE_DIR"], !dir.isEmpty {
            self.directory = dir
        } else if let run = environment["REPLICAFS_RUN_DIR"], !run.isEmpty {
            self.directory = run + "/state"
        } else if getuid() == 0 {
            self.directory = "/var/lib/replicafs"
        } else {
            self.directory = (environment["HOME"] ?? "/tmp") + "/.local/state/replicafs"
        }
    }

    public func path(_ vm: String) -> String { vmDirectory + "/" + vm + ".json" }

    public func lookup(_ vm: String) -> Entry? {
        guard ProtectedVM.validName(vm), let bytes = Self.readTrusted(path(vm)) else { return nil }
        return try? JSONDecoder().decode(Entry.self, from: Data(bytes))
    }

    public func all() -> [Entry] {
        guard let names = try? FileSystem.list(vmDirectory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.compactMap { lookup(String($0.dropLast(5))) }
    }

    /// Writes `entry` atomically (temporary file, fsync, rename).
    public func record(_ entry: Entry) throws {
        try Self.prepare(vmDirectory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(entry).withUnsafeBytes { try FileSystem.writeAtomically(path(entry.vm), $0) }
    }

    /// Changes the VM's entry, creating it from `disksDir` and `target` when there is none.
    public func update(_ vm: String, disksDir: String?, target: String, _ change: (inout Entry) -> Void = { _ in }) throws {
        var entry = lookup(vm) ?? Entry(vm: vm, disksDir: disksDir, target: target)
        if let disksDir { entry.disksDir = disksDir }
        entry.target = target
        change(&entry)
        if entry != lookup(vm) { try record(entry) }
    }

    /// Records every VM protected in `disksDir` (what a mount daemon knows when it starts).
    public func recordProtected(disksDir: String) {
        for vm in ProtectedVM.all(disksDir: disksDir) {
            do {
                try update(vm.name, disksDir: disksDir, target: vm.target)
            } catch {
                DaemonLog.logger.warning("cannot record VM \(vm.name) in \(vmDirectory): \(error)")
            }
        }
    }

    public func remove(_ vm: String) throws {
        guard ProtectedVM.validName(vm) else { return }
        try FileSystem.remove(path(vm))
    }

    /// The VM's entry, or a one-line error naming the VM and the command to run.
    public func require(_ vm: String, for command: String, option: String = "--target <store>") throws -> Entry {
        guard let entry = lookup(vm) else { throw Self.notRegistered(vm, command: command, option: option) }
        return entry
    }

    /// `option` is what the command takes instead of the registry (nil: nothing).
    public static func notRegistered(_ vm: String, command: String, option: String? = "--target <store>") -> ReplicaError {
        let instead = option.map { ", or run `replicafs \(command) \(vm) \($0)`" } ?? ""
        return ReplicaError("unknown VM \(vm): not registered on this host; protect it with `replicafs protect \(vm) --disks-dir <dir> --disk <img> --target <store>`\(instead) (`replicafs vms` lists the VMs known here)", code: .unknownVM)
    }

    /// Creates a registry directory owned by this user, mode 0700.
    static func prepare(_ dir: String) throws {
        try FileSystem.mkdirs(dir, mode: 0o700)
    }

    /// A registry file if it is a regular file owned by this user and writable by no one else.
    static func readTrusted(_ path: String) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) else { return nil }
        defer { fd.close() }
        guard let st = try? fd.stat(), st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(), st.st_mode & 0o022 == 0 else {
            DaemonLog.logger.warning("ignoring \(path): not a regular file of uid \(geteuid()) writable by it alone")
            return nil
        }
        return try? fd.readAll()
    }
}
