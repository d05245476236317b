import Foundation
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A store directory encrypted at rest (`serve --store DIR --encrypt-key-file F`): an
/// `ObjectStore` over `SealedBucket(FileBucket(DIR/objects))`, recognised by its marker
/// (`DIR/replicafs-store.json`: format and key id, never the key). Why objects and not the
/// directory store's files (which are rewritten in place and read by offset): the object
/// layout writes each object once, whole, with the catalog last, so sealing object by object
/// keeps every guarantee of the store unchanged. The plaintext the store itself needs as
/// files (redo logs of a resync before their upload) and its read cache live in memory
/// (`/dev/shm`), never under DIR. Layout and limits: docs/secondary-site.md, "Encryption at rest".
public enum SealedStoreDirectory {
    /// Sealed objects under DIR.
    public static func objectsDirectory(_ directory: String) -> String { directory + "/objects" }
    /// Sealed copies of uploads on their way into `objects` (SealedBucket's staging).
    public static func stagingDirectory(_ directory: String) -> String { directory + "/.staging" }
    /// The receiver's state (bindings, sealed staging of transfers in progress).
    public static func receiverDirectory(_ directory: String) -> String { directory + "/.receiver" }

    /// The memory file system for the store's own plaintext scratch: `REPLICAFS_MEMORY_SCRATCH`, else /dev/shm.
    static var scratchBase: String { ProcessInfo.processInfo.environment["REPLICAFS_MEMORY_SCRATCH"] ?? "/dev/shm" }

    /// The scratch directory of the store at `directory` (one per store, mode 0700).
    static func scratchDirectory(_ directory: String) -> String {
        scratchBase + "/replicafs-\(getuid())/" + ObjectDigest.sha256(Array(directory.utf8)).prefix(16)
    }

    /// The key of `options`, checked against the marker of `directory`: a one-line error when
    /// none is given or it is another key.
    static func cipher(_ directory: String, marker: StoreDirectoryMarker, options: TargetOptions) throws -> ChunkCipher {
        guard let keyFile = options.encryptKeyFile else {
            throw ReplicaError("\(directory) is an encrypted store (key id \(marker.keyID)): give its key with --encrypt-key-file FILE",
                               kind: .nonRecoverable, code: .badRequest)
        }
        let cipher = try ChunkCipher(keyFile: keyFile)
        let id = ObjectDigest.hex(cipher.keyID)
        guard id == marker.keyID else {
            throw ReplicaError("key file \(keyFile) is not the key of encrypted store \(directory) (store key id \(marker.keyID), this key's \(id))",
                               kind: .nonRecoverable, code: .badRequest)
        }
        return cipher
    }

    /// Opens the encrypted store at `directory` with the key of `options`.
    public static func open(_ directory: String, options: TargetOptions) throws -> (store: ObjectStore, cipher: ChunkCipher) {
        guard let marker = try StoreDirectoryMarker.read(directory) else {
            throw ReplicaError("\(directory) is not an encrypted store (no \(StoreDirectoryMarker.fileName))", kind: .nonRecoverable, code: .badRequest)
        }
        let cipher = try Self.cipher(directory, marker: marker, options: options)
        guard FileSystem.isDirectory(scratchBase) else {
            throw ReplicaError("encrypted store \(directory) needs a memory file system for its plaintext scratch: \(scratchBase) is missing (set REPLICAFS_MEMORY_SCRATCH to a tmpfs)",
                               kind: .nonRecoverable)
        }
        let scratch = scratchDirectory(directory)
        try FileSystem.mkdirs(scratch, mode: 0o700)
        // Redo logs a process killed during a resync left in the scratch ("...-<pid>.hrl") go.
        for name in (try? FileSystem.list(scratch + "/.staging")) ?? [] {
            guard let pid = name.split(separator: "-").last?.split(separator: ".").first.flatMap({ Int32($0) }),
                  kill(pid, 0) != 0, errno == ESRCH else { continue }
            try? FileSystem.remove(scratch + "/.staging/" + name)
        }
        let files = try FileBucket(root: objectsDirectory(directory))
        let bucket = SealedBucket(files, cipher: cipher, stagingDirectory: stagingDirectory(directory))
        // No disk tier in the cache (it would hold plaintext): the memory tier only.
        let store = try ObjectStore(bucket: bucket, target: directory, cacheDirectory: scratch, cacheLimit: 0)
        return (store, cipher)
    }

    /// Makes `directory` an encrypted store for `options`' key when it is new or empty (the
    /// marker written first); an existing encrypted store must have that key. A directory
    /// holding anything else (a plain store) is refused, nothing written.
    public static func create(_ directory: String, options: TargetOptions) throws -> (store: ObjectStore, cipher: ChunkCipher) {
        guard let keyFile = options.encryptKeyFile else {
            throw ReplicaError("an encrypted store needs --encrypt-key-file", kind: .nonRecoverable, code: .badRequest)
        }
        if try StoreDirectoryMarker.read(directory) == nil {
            let present = FileSystem.isDirectory(directory) ? try FileSystem.list(directory) : []
            guard present.isEmpty else {
                throw ReplicaError("\(directory) holds a store that is not encrypted (\(present.sorted().prefix(3).joined(separator: ", "))): serve it without --encrypt-key-file, or give an empty directory",
                                   kind: .nonRecoverable, code: .badRequest)
            }
            let cipher = try ChunkCipher(keyFile: keyFile)
            try FileSystem.mkdirs(directory, mode: 0o700)
            try StoreDirectoryMarker(keyID: ObjectDigest.hex(cipher.keyID)).write(to: directory)
        }
        return try open(directory, options: options)
    }
}
