import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A file that lives only in memory (memfd_create): where the encrypted receiver decrypts what
/// a store call needs as a file (a staged log at its commit, an initial copy, a resync work
/// copy), so no plaintext reaches a disk. It is reached by `path` (/proc/self/fd/N, this
/// process only), holes stay holes (memory follows the data written), and it is gone when
/// closed (at deinit) or when the process dies, even by kill -9. Its pages may be swapped
/// like any process memory.
public final class MemoryFile: Sendable {
    public let descriptor: FileDescriptor

    /// A new empty memory file; `name` shows in /proc/self/fd for diagnosis only.
    public init(name: String) throws {
        let fd = rfs_memfd_create("replicafs:" + name)
        guard fd >= 0 else { throw SystemError.current("memfd_create", name) }
        descriptor = FileDescriptor(rawValue: fd, path: "/proc/self/fd/\(fd)")
    }

    /// The file's path for this process (open it like any file).
    public var path: String { descriptor.path }

    deinit { descriptor.close() }
}
