#if canImport(Glibc)
import Glibc
#endif

/// The daemon's state in `<disks-dir>/.replicafs` (VM policies, resync requirements,
/// fingerprints, retired logs), validated in place. The disks directory may be writable by
/// users other than the daemon's (root), so the state directory and its subdirectories must
/// be real directories (not symlinks) owned by the daemon's user and writable by no one else,
/// and a policy file is read only if it is a regular file with the same owner and no group or
/// other write bit. Otherwise a user who can write the disks directory could plant a policy
/// whose quiesce command then runs as root (docs/security.md).
public enum StateDirectory {
    public static let name = ".replicafs"
    static let subdirectories = ["vms", "resync", "shipped", "checkpoints"]

    public static func path(disksDir: String) -> String { disksDir + "/" + name }

    /// Why a file or directory with these attributes cannot hold the daemon's state, or nil.
    static func distrust(_ st: stat, directory: Bool) -> String? {
        let kind = st.st_mode & S_IFMT
        if kind == S_IFLNK { return "is a symlink" }
        if directory && kind != S_IFDIR { return "is not a directory" }
        if !directory && kind != S_IFREG { return "is not a regular file" }
        if st.st_uid != geteuid() { return "is owned by uid \(st.st_uid), not by uid \(geteuid()) that runs replicafs" }
        if st.st_mode & 0o022 != 0 { return "is writable by its group or by others (mode \(String(st.st_mode & 0o7777, radix: 8)))" }
        return nil
    }

    /// Checks `<disksDir>/.replicafs` and its subdirectories (absent ones are fine): each must be
    /// a directory owned by the daemon's user and writable by no one else. Throws one line.
    public static func check(disksDir: String) throws {
        let base = path(disksDir: disksDir)
        for dir in [base] + subdirectories.map({ base + "/" + $0 }) {
            var st = stat()
            guard lstat(dir, &st) == 0 else {
                if errno == ENOENT { if dir == base { return } else { continue } }
                throw SystemError.current("stat", dir)
            }
            if let problem = distrust(st, directory: true) {
                throw ReplicaError("refusing state directory \(dir): it \(problem); whoever can write it could make replicafs run commands as root: remove it, or chown it to root and chmod go-w")
            }
        }
    }

    /// Creates `<disksDir>/.replicafs` (mode 0755, owned by the daemon's user) when missing, so
    /// no one else can create it later, then checks it as `check` does.
    public static func prepare(disksDir: String) throws {
        let base = path(disksDir: disksDir)
        if mkdir(base, 0o755) != 0 && errno != EEXIST { throw SystemError.current("mkdir", base) }
        try check(disksDir: disksDir)
    }

    /// Reads a state file only if the directory holding it passed `check` and the file itself,
    /// checked on the open descriptor (so a swap after the check cannot pass), is a regular
    /// file owned by the daemon's user and writable by no one else; nil (with the reason on
    /// stderr) otherwise.
    public static func readTrusted(_ path: String) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) else { return nil }
        defer { fd.close() }
        guard let st = try? fd.stat() else { return nil }
        if let problem = distrust(st, directory: false) {
            DaemonLog.logger.warning("ignoring \(path): it \(problem)")
            return nil
        }
        return try? fd.readAll()
    }
}
