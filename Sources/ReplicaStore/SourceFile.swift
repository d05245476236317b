import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Bytes on the sending host that a target store takes in: a sealed change log, or a disk
/// image for an initial copy, resync or rebase. A store elsewhere streams them by range
/// (`size`, `read`); a store on the same host may copy `localPath` directly (direct I/O,
/// holes skipped). The name is what the store knows it by (the log's or disk's file name).
public struct SourceFile: Sendable, Hashable {
    public let name: String
    /// The file on this host (for a store that runs here; never a location inside a store).
    public let localPath: String

    public init(_ localPath: String) {
        self.localPath = localPath
        name = localPath.split(separator: "/").last.map(String.init) ?? localPath
    }

    /// A file known by another name than its path's last component (a log decrypted into a
    /// memory file, reached as /proc/self/fd/N).
    public init(_ localPath: String, name: String) {
        self.localPath = localPath
        self.name = name
    }

    public func size() throws -> Int64 { Int64(try FileSystem.stat(localPath).st_size) }

    /// Reads up to `count` bytes at `offset`; fewer only at the end.
    public func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        let fd = try FileDescriptor.open(localPath, O_RDONLY)
        defer { fd.close() }
        var done = 0
        while done < count {
            let n = try fd.pread(into: buffer + done, count: count - done, offset: offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Files by disk name, e.g. a VM's images.
    public static func map(_ paths: [String: String]) -> [String: SourceFile] { paths.mapValues(SourceFile.init) }
    public static func map(_ paths: [String: [String]]) -> [String: [SourceFile]] { paths.mapValues { $0.map(SourceFile.init) } }
    /// Their local paths, for the same-host store.
    static func paths(_ files: [String: SourceFile]) -> [String: String] { files.mapValues(\.localPath) }
    static func paths(_ files: [String: [SourceFile]]) -> [String: [String]] { files.mapValues { $0.map(\.localPath) } }
}
