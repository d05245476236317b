import Foundation
import NIOSSL
import ReplicaSystem
import Synchronization

/// Client TLS configurations parsed from PKI directories, kept per directory while its files
/// stay the same. The replicator opens each VM's store at every 100 ms tick, and parsing the
/// PEM files (CA, certificate, key) each time cost more CPU than some of the shipping. Each
/// use stats the three files: a file whose inode, size, mtime, ctime or mode changed (a
/// rotated certificate, a key made private) is read again, so rotation takes effect at the
/// next open, and a missing or refused file still fails with `PKIDirectory`'s own error.
public enum PKIConfigurationCache {
    /// What identifies a file's contents without reading it.
    struct Stamp: Equatable {
        var inode: UInt64
        var size: Int64
        var mode: UInt32
        var mtime: Int64, mtimeNanos: Int
        var ctime: Int64, ctimeNanos: Int

        init(_ st: stat) {
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mode = UInt32(st.st_mode)
            mtime = Int64(st.st_mtim.tv_sec); mtimeNanos = Int(st.st_mtim.tv_nsec)
            ctime = Int64(st.st_ctim.tv_sec); ctimeNanos = Int(st.st_ctim.tv_nsec)
        }
    }

    private struct Entry {
        var stamps: [Stamp]
        var configuration: TLSConfiguration
    }

    private static let clients = Mutex<[String: Entry]>([:])
    private static let loadCount = Mutex(0)
    /// How many times the files were parsed (tests: the cache is used).
    static var loads: Int { loadCount.withLock { $0 } }

    /// `pki.clientTLSConfiguration()`, parsed once per version of the directory's files.
    public static func clientTLSConfiguration(_ pki: PKIDirectory) throws -> TLSConfiguration {
        guard let stamps = stamps(pki) else { return try pki.clientTLSConfiguration() }
        if let entry = clients.withLock({ $0[pki.path] }), entry.stamps == stamps { return entry.configuration }
        let configuration = try pki.clientTLSConfiguration()
        loadCount.withLock { $0 += 1 }
        // Stamped before the read: a file changed during it differs next time and is read again.
        clients.withLock { $0[pki.path] = Entry(stamps: stamps, configuration: configuration) }
        return configuration
    }

    /// The stamps of the CA, certificate and key files; nil when one cannot be stat'ed (the
    /// uncached load then says what is wrong).
    static func stamps(_ pki: PKIDirectory) -> [Stamp]? {
        var stamps: [Stamp] = []
        for name in [PKIDirectory.caFile, PKIDirectory.certificateFile, PKIDirectory.keyFile] {
            guard let st = try? FileSystem.stat(pki.file(name)) else { return nil }
            stamps.append(Stamp(st))
        }
        return stamps
    }
}
