import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// An open file descriptor with typed, throwing wrappers for the calls ReplicaFS makes.
/// It does not close itself: owners call `close()` when they are done.
public struct FileDescriptor: Sendable, Hashable {
    public let rawValue: Int32
    /// The path it was opened with, carried into errors.
    public let path: String

    public init(rawValue: Int32, path: String) {
        self.rawValue = rawValue
        self.path = path
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        let fd = try syscallRetrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: fd, path: path)
    }

    public static func open(at dir: FileDescriptor, _ name: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        let full = dir.path + "/" + name
        let fd = try syscallRetrying("open", full) { Glibc.openat(dir.rawValue, name, flags | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: fd, path: full)
    }

    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// Reads up to `count` bytes at `offset`; short only at end of file.
    @discardableResult
    public func pread(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        var done = 0
        while done < count {
            let n = try syscallRetrying("read", path) {
                Glibc.pread(rawValue, buffer + done, count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all `count` bytes at `offset`.
    public func pwrite(_ buffer: UnsafeRawPointer, count: Int, offset: Int64) throws {
        var done = 0
        while done < count {
            let n = try syscallRetrying("write", path) {
                Glibc.pwrite(rawValue, buffer + done, count - done, off_t(offset) + off_t(done))
            }
            done += n
        }
    }

    /// Writes two buffers back to back at `offset` in one call where the kernel allows.
    public func pwritev(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, offset: Int64) throws {
        let total = a.count + b.count
        var iov = (iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
        let n = try withUnsafeMutableBytes(of: &iov) { raw -> Int in
            let vec = raw.baseAddress!.assumingMemoryBound(to: iovec.self)
            return try syscallRetrying("write", path) { Glibc.pwritev(rawValue, vec, b.count > 0 ? 2 : 1, off_t(offset)) }
        }
        if n < total {
            // Short write (rare on regular files): finish the rest byte-exactly.
            var rest = n
            if rest < a.count {
                try pwrite(a.baseAddress! + rest, count: a.count - rest, offset: offset + Int64(rest))
                rest = a.count
            }
            let inB = rest - a.count
            if b.count > inB {
                try pwrite(b.baseAddress! + inB, count: b.count - inB, offset: offset + Int64(rest))
            }
        }
    }

    public func fsync() throws {
        _ = try syscallRetrying("fsync", path) { Glibc.fsync(rawValue) }
    }

    public func fdatasync() throws {
        _ = try syscallRetrying("fdatasync", path) { Glibc.fdatasync(rawValue) }
    }

    /// Starts writing the range's dirty pages to disk without waiting (sync_file_range WRITE);
    /// `length` 0 means to the end of the file. A later fsync then has less left to do.
    public func startWriteback(offset: Int64, length: Int64) throws {
        _ = try syscallRetrying("sync_file_range", path) { rfs_start_writeback(rawValue, off_t(offset), off_t(length)) }
    }

    public func truncate(to size: Int64) throws {
        _ = try syscallRetrying("truncate", path) { Glibc.ftruncate(rawValue, off_t(size)) }
    }

    public func fallocate(mode: Int32, offset: Int64, length: Int64) throws {
        _ = try syscallRetrying("fallocate", path) { rfs_fallocate(rawValue, mode, off_t(offset), off_t(length)) }
    }

    public func stat() throws -> stat {
        var st = Glibc.stat()
        _ = try syscallRetrying("stat", path) { Glibc.fstat(rawValue, &st) }
        return st
    }

    public func size() throws -> Int64 { Int64(try stat().st_size) }

    public func chmod(_ mode: mode_t) throws {
        _ = try syscallRetrying("chmod", path) { Glibc.fchmod(rawValue, mode) }
    }

    public func lseek(_ offset: Int64, whence: Int32) throws -> Int64 {
        Int64(try syscallRetrying("lseek", path) { Glibc.lseek(rawValue, off_t(offset), whence) })
    }

    /// Takes an exclusive advisory lock without waiting; false if another process holds it.
    public func tryLockExclusive() throws -> Bool {
        if rfs_flock(rawValue, LOCK_EX | LOCK_NB) == 0 { return true }
        if Glibc.errno == EWOULDBLOCK { return false }
        throw SystemError.current("flock", path)
    }

    /// Waits for an advisory lock (shared or exclusive); released when the descriptor closes.
    public func lock(exclusive: Bool) throws {
        _ = try syscallRetrying("flock", path) { rfs_flock(rawValue, exclusive ? LOCK_EX : LOCK_SH) }
    }

    /// Reads the whole file from offset 0, until end of file (proc files report size 0).
    public func readAll() throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let offset = off_t(bytes.count)
            let n = try chunk.withUnsafeMutableBytes { raw in
                try syscallRetrying("read", path) { Glibc.pread(rawValue, raw.baseAddress!, raw.count, offset) }
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Small filesystem helpers that throw SystemError.
public enum FileSystem {
    public static func stat(_ path: String) throws -> stat {
        var st = Glibc.stat()
        _ = try syscallRetrying("stat", path) { rfs_stat(path, &st) }
        return st
    }

    public static func lstat(_ path: String) throws -> stat {
        var st = Glibc.stat()
        _ = try syscallRetrying("stat", path) { rfs_lstat(path, &st) }
        return st
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        guard let st = try? stat(path) else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names in a directory, without "." and "..", sorted.
    public static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw SystemError.current("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func realPath(_ path: String) throws -> String {
        guard let p = realpath(path, nil) else { throw SystemError.current("resolve", path) }
        defer { free(p) }
        return String(cString: p)
    }

    public static func mkdirs(_ path: String, mode: mode_t = 0o755) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && Glibc.errno != EEXIST {
                throw SystemError.current("mkdir", current)
            }
        }
    }

    /// An fsync of each of `names` in `directory`. Through a FUSE mountpoint it pushes the
    /// kernel's cached writes to the daemon, which logs them; so never from that daemon.
    public static func fsync(_ names: [String], in directory: String) throws {
        for name in names {
            let fd = try FileDescriptor.open(directory + "/" + name, O_RDONLY)
            defer { fd.close() }
            try fd.fsync()
        }
    }

    public static func remove(_ path: String) throws {
        if unlink(path) != 0 && Glibc.errno != ENOENT { throw SystemError.current("unlink", path) }
    }

    /// rename(2): `path` takes the name `to` (replacing a file there), in one step.
    public static func rename(_ path: String, to: String) throws {
        guard Glibc.rename(path, to) == 0 else { throw SystemError.current("rename", path) }
    }

    public static func fsyncDirectory(_ path: String) throws {
        let fd = try FileDescriptor.open(path, O_RDONLY | O_DIRECTORY)
        defer { fd.close() }
        try fd.fsync()
    }

    public static func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        defer { fd.close() }
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBytes { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) }
    }

    /// Replaces `path` with `bytes` all at once: written to a temporary file, fsynced, renamed
    /// over it, and the directory fsynced, so a crash leaves the old or the new file, never a mix.
    /// The temporary file is always a new file (O_EXCL|O_NOFOLLOW, mode 0600 by default): a
    /// symlink planted at its name is removed, never followed, so root never writes through it.
    public static func writeAtomically(_ path: String, _ bytes: UnsafeRawBufferPointer, mode: mode_t = 0o600) throws {
        let tmp = path + ".tmp"
        let fd = try createExclusive(tmp, mode: mode)
        do {
            if bytes.count > 0 { try fd.pwrite(bytes.baseAddress!, count: bytes.count, offset: 0) }
            try fd.fsync()
        } catch {
            fd.close()
            throw error
        }
        fd.close()
        guard Glibc.rename(tmp, path) == 0 else { throw SystemError.current("rename", path) }
        try fsyncDirectory(path.directoryPart)
    }

    /// Creates `path` as a new file with O_EXCL|O_NOFOLLOW; whatever already has the name (a
    /// stale temporary file left by a crash, or a symlink someone planted) is unlinked first.
    /// A name that keeps coming back (someone racing us) is an error, never followed.
    public static func createExclusive(_ path: String, mode: mode_t) throws -> FileDescriptor {
        var attempts = 0
        while true {
            do {
                return try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
            } catch let e as SystemError where e.errno == EEXIST && attempts < 3 {
                attempts += 1
                try remove(path)
            }
        }
    }

    public static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        return try fd.readAll()
    }
}
