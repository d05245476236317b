#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    /// Removes a directory and everything under it (nothing when it is gone already).
    public static func removeTree(_ path: String) throws {
        for name in try list(path) {
            let child = path + "/" + name
            if isDirectory(child) { try removeTree(child) } else { try remove(child) }
        }
        if rmdir(path) != 0 && errno != ENOENT { throw SystemError.current("rmdir", path) }
    }
}
