import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where running mounts record themselves, so that `unmount`, `rotate` and `status` can find
/// the daemon of a mountpoint: `<run dir>/<key>.json`, `.sock` and `.log`, the key being a
/// hash of the mountpoint's real path. The run dir is $REPLICAFS_RUN_DIR, else /run/replicafs.
public struct MountRegistry: Sendable {
    public struct Entry: Codable, Sendable {
        public var pid: Int32
        public var mountpoint: String
        public var disksDir: String
        public var socket: String

        public init(pid: Int32, mountpoint: String, disksDir: String, socket: String) {
            self.pid = pid
            self.mountpoint = mountpoint
            self.disksDir = disksDir
            self.socket = socket
        }
    }

    public let runDirectory: String

    public init(runDirectory: String? = nil) {
        if let dir = runDirectory ?? ProcessInfo.processInfo.environment["REPLICAFS_RUN_DIR"], !dir.isEmpty {
            self.runDirectory = dir
        } else if getuid() == 0 {
            self.runDirectory = "/run/replicafs"
        } else {
            self.runDirectory = "/tmp/replicafs-\(getuid())"
        }
    }

    /// FNV-1a of the mountpoint path, as 16 hex digits.
    public static func key(for mountpoint: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in mountpoint.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16).leftPadded(16)
    }

    public func paths(for mountpoint: String) -> (entry: String, socket: String, log: String) {
        let base = runDirectory + "/" + Self.key(for: mountpoint)
        return (base + ".json", base + ".sock", base + ".log")
    }

    public func record(_ entry: Entry) throws {
        try FileSystem.mkdirs(runDirectory, mode: 0o700)
        let data = try JSONEncoder().encode(entry)
        let path = paths(for: entry.mountpoint).entry
        try data.withUnsafeBytes { try FileSystem.writeAtomically(path, $0) }
    }

    public func lookup(_ mountpoint: String) -> Entry? {
        guard let bytes = try? FileSystem.readFile(paths(for: mountpoint).entry) else { return nil }
        return try? JSONDecoder().decode(Entry.self, from: Data(bytes))
    }

    public func remove(_ mountpoint: String) {
        let p = paths(for: mountpoint)
        _ = unlink(p.entry)
        _ = unlink(p.socket)
    }

    public func all() -> [Entry] {
        guard let names = try? FileSystem.list(runDirectory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.compactMap { name in
            guard let bytes = try? FileSystem.readFile(runDirectory + "/" + name) else { return nil }
            return try? JSONDecoder().decode(Entry.self, from: Data(bytes))
        }
    }

    /// True when a process with this pid exists and has not exited. A daemon that exited stays
    /// a zombie until its parent (often init, here slow to reap) collects it: that is not alive.
    public static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? FileSystem.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")),
              close + 2 < stat.count else { return true }
        return stat[close + 2] != UInt8(ascii: "Z")
    }
}
