import ReplicaSystem
import Synchronization

/// Turns a `--target` into a store. A plain path is a `DirectoryStore`; a URL's scheme
/// (`replicafs://`, `s3://`) picks the opener its module registered at start-up, so this layer
/// needs no network code and the engine opens every kind of store the same way.
public enum TargetStoreOpeners {
    public typealias Opener = @Sendable (_ target: String, _ options: TargetOptions) throws -> any TargetStore

    private static let openers = Mutex<[String: Opener]>([:])

    /// Makes `scheme://...` targets open through `opener` (the CLI registers each at start-up).
    public static func register(scheme: String, _ opener: @escaping Opener) {
        openers.withLock { $0[scheme] = opener }
    }

    /// The URL scheme of `target` ("s3" of "s3://b/p"), nil for a path.
    public static func scheme(of target: String) -> String? {
        guard let range = target.range(of: "://") else { return nil }
        let scheme = String(target[..<range.lowerBound])
        return scheme.isEmpty || !scheme.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" }) ? nil : scheme
    }

    /// Makes directories marked as encrypted stores (`StoreDirectoryMarker`) open through
    /// `opener` (the CLI registers the sealed object store at start-up).
    public static func registerMarkedDirectory(_ opener: @escaping Opener) {
        openers.withLock { $0[markedDirectoryKey] = opener }
    }

    private static let markedDirectoryKey = "://marked-directory"

    public static func open(_ target: String, options: TargetOptions) throws -> any TargetStore {
        guard let scheme = scheme(of: target) else { return try openDirectory(target, options: options) }
        guard let opener = openers.withLock({ $0[scheme] }) else {
            throw ReplicaError("unsupported target \(target): use a directory, replicafs://HOST:PORT or s3://BUCKET/PREFIX",
                               kind: .nonRecoverable)
        }
        return try opener(target, options)
    }

    /// A plain path: the encrypted store its marker names, else a `DirectoryStore` (refused
    /// with a key file, which only an encrypted store takes).
    static func openDirectory(_ target: String, options: TargetOptions) throws -> any TargetStore {
        if try StoreDirectoryMarker.read(target) != nil {
            guard let opener = openers.withLock({ $0[markedDirectoryKey] }) else {
                throw ReplicaError("\(target) is an encrypted store, which this program cannot open", kind: .nonRecoverable)
            }
            return try opener(target, options)
        }
        if let key = options.encryptKeyFile {
            throw ReplicaError("\(target) is not an encrypted store (no \(StoreDirectoryMarker.fileName)): leave out --encrypt-key-file \(key)",
                               kind: .nonRecoverable, code: .badRequest)
        }
        return try DirectoryStore(root: target)
    }
}

/// Opens the target store a VM's settings or `--target` name (see `TargetStoreOpeners`).
public func openTargetStore(_ target: String, options: TargetOptions = TargetOptions()) throws -> any TargetStore {
    try TargetStoreOpeners.open(target, options: options)
}
