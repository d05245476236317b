#if canImport(Glibc)
import Glibc
#endif

/// Who holds files open: processes (their `/proc/<pid>/fd` links) and loop devices (their
/// `/sys/block/loop*/loop/backing_file`, with where the device is mounted). A failback asks
/// before it stops a failover mount's writes, so a VM or a filesystem still on a disk stops
/// it with a clear message instead of freezing a mounted filesystem under its feet.
public enum FileUsers {
    /// One user of a file.
    public struct User: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        /// A process id, or nil for a loop device.
        public var pid: Int32?
        /// The process's command name, or the loop device (/dev/loop3).
        public var name: String
        /// Where the loop device is mounted (none for a process or an unmounted device).
        public var mountpoints: [String]

        public var description: String {
            if let pid { return "\(path) is open in process \(pid) (\(name))" }
            let mounted = mountpoints.isEmpty ? "" : ", mounted on \(mountpoints.joined(separator: ", "))"
            return "\(path) is attached to loop device \(name)\(mounted)"
        }

        /// The command that makes this user let go.
        public var release: String {
            if let pid { return "stop process \(pid) (\(name))" }
            return (mountpoints.map { "umount \($0)" } + ["losetup -d \(name)"]).joined(separator: "; ")
        }
    }

    /// Every process (but `excluding`) and loop device using one of `paths` (absolute).
    public static func users(of paths: [String], excluding: Set<Int32> = [getpid()]) -> [User] {
        let wanted = Set(paths)
        var found: [User] = []
        for loop in (try? FileSystem.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
            guard let bytes = try? FileSystem.readFile("/sys/block/\(loop)/loop/backing_file") else { continue }
            var backing = String(decoding: bytes, as: UTF8.self).trimmingSuffix("\n")
            if backing.hasSuffix(" (deleted)") { backing = String(backing.dropLast(10)) }
            guard wanted.contains(backing) else { continue }
            let device = "/dev/" + loop
            let mounted = MountTable.mounts().filter { $0.source == device }.map(\.mountpoint)
            found.append(User(path: backing, pid: nil, name: device, mountpoints: mounted))
        }
        for entry in (try? FileSystem.list("/proc")) ?? [] {
            guard let pid = Int32(entry), !excluding.contains(pid) else { continue }
            let fdDir = "/proc/\(entry)/fd"
            guard let fds = try? FileSystem.list(fdDir) else { continue }
            for fd in fds {
                guard let target = readLink(fdDir + "/" + fd), wanted.contains(target) else { continue }
                found.append(User(path: target, pid: pid, name: command(pid), mountpoints: []))
                break
            }
        }
        return found
    }

    /// The target of a symlink, or nil.
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func command(_ pid: Int32) -> String {
        guard let bytes = try? FileSystem.readFile("/proc/\(pid)/comm") else { return "?" }
        return String(decoding: bytes, as: UTF8.self).trimmingSuffix("\n")
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
