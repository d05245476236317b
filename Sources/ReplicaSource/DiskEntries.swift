import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// What a disks directory holds, by one rule: an image is a regular file, either directly or
/// through a symlink whose target is a regular file inside the disks directory (not hidden, not
/// a change log, not another image). Hidden entries (`.replicafs`, the lock) and change logs
/// are not images. Every other entry (a directory, a symlink that dangles, leads to a directory
/// or leaves the disks directory, a FIFO, a socket, a device) is skipped, and named with its
/// reason in the mount's output, the daemon's log and `status`, never served: a symlink to
/// `/etc/shadow` planted by a user who can write the directory must not be served by root.
public struct DiskEntries: Sendable {
    /// An entry that is not served, and why.
    public struct Skipped: Codable, Sendable, Equatable, CustomStringConvertible {
        public var name: String
        public var reason: String
        public var description: String { "\(name) (\(reason))" }
    }

    public static let rule = "only regular files, or symlinks to regular files inside the disks directory, are served"

    public var images: [String] = []
    public var skipped: [Skipped] = []

    /// Sorts the entries of `directory` (an absolute, resolved path) into images and skipped ones.
    public static func scan(_ directory: String) throws -> DiskEntries {
        var result = DiskEntries()
        let names = try FileSystem.list(directory)
        let regular = Set(names.filter { name in
            guard let st = try? FileSystem.lstat(directory + "/" + name) else { return false }
            return (st.st_mode & S_IFMT) == S_IFREG
        })
        for name in names where !name.hasPrefix(".") && !LogName.isLog(name) {
            if regular.contains(name) {
                result.images.append(name)
            } else if let reason = problem(name, in: directory, images: regular) {
                result.skipped.append(Skipped(name: name, reason: reason))
            } else {
                result.images.append(name)
            }
        }
        return result
    }

    /// Why the non-regular entry `name` is not an image, or nil when it is a symlink that may be served.
    static func problem(_ name: String, in directory: String, images: Set<String>) -> String? {
        let path = directory + "/" + name
        guard let lst = try? FileSystem.lstat(path) else { return "vanished" }
        switch lst.st_mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR, S_IFBLK: return "a device file"
        case S_IFLNK: break
        default: return "not a regular file"
        }
        guard let target = try? FileSystem.realPath(path), let st = try? FileSystem.stat(target) else {
            return "a dangling symlink"
        }
        return targetProblem(target, st: st, directory: directory, images: images)
    }

    /// Why a symlink's resolved `target` may not be served, or nil.
    static func targetProblem(_ target: String, st: stat, directory: String, images: Set<String>) -> String? {
        guard target.hasPrefix(directory + "/") else { return "a symlink leaving the disks directory, to \(target)" }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            return (st.st_mode & S_IFMT) == S_IFDIR ? "a symlink to a directory" : "a symlink to something not a regular file"
        }
        let relative = target.dropFirst(directory.count + 1).split(separator: "/").map(String.init)
        if relative.contains(where: { $0.hasPrefix(".") }) { return "a symlink to a hidden file" }
        if let last = relative.last, LogName.isLog(last) { return "a symlink to a change log" }
        if relative.count == 1, images.contains(relative[0]) { return "a second name for image \(relative[0])" }
        return nil
    }

    /// Checks, on the open descriptor (so a symlink swapped after `scan` cannot pass), that an
    /// image opened through `path` is a regular file inside `directory`. Throws one line.
    public static func checkOpened(_ fd: FileDescriptor, path: String, directory: String) throws {
        let st = try fd.stat()
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ReplicaError("image \(path) is not a regular file") }
        let target = try resolvedPath(of: fd)
        guard target.hasPrefix(directory + "/") else {
            throw ReplicaError("refusing image \(path): it leads outside the disks directory, to \(target) (\(rule))")
        }
    }

    /// The path root may write disk `name` of `directory` at (failback, reverse replication):
    /// the path itself when absent or a regular file, the target of a symlink that the rule
    /// allows; anything else (a symlink to `/etc/shadow` planted by a user who can write the
    /// directory) throws one line instead of being written through.
    public static func pathForWriting(_ name: String, in rawDirectory: String) throws -> String {
        let directory = try FileSystem.realPath(rawDirectory)
        let path = directory + "/" + name
        guard let lst = try? FileSystem.lstat(path) else { return path }
        if (lst.st_mode & S_IFMT) == S_IFREG { return path }
        if let reason = problem(name, in: directory, images: []) {
            throw ReplicaError("refusing to write disk \(path): it is \(reason) (\(rule))")
        }
        return try FileSystem.realPath(path)
    }

    /// The path the kernel holds for an open descriptor (/proc/self/fd).
    static func resolvedPath(of fd: FileDescriptor) throws -> String {
        let link = "/proc/self/fd/\(fd.rawValue)"
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(link, &buffer, Int(PATH_MAX))
        guard n > 0 else { throw SystemError.current("readlink", link) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
