import ReplicaStore
import ReplicaSystem
import Synchronization

/// Opens the original site reprotect and failback write: `scheme://...` through the opener its
/// module registered at start-up (the CLI registers `replicafs`), anything else as a local
/// directory.
public enum OriginalSites {
    public typealias Opener = @Sendable (String, TargetOptions) throws -> any OriginalSite
    private static let openers = Mutex<[String: Opener]>([:])

    public static func register(scheme: String, _ opener: @escaping Opener) {
        openers.withLock { $0[scheme] = opener }
    }

    /// Whether `location` names a site on another host (a URL rather than a directory).
    public static func isRemote(_ location: String) -> Bool { TargetStoreOpeners.scheme(of: location) != nil }

    public static func open(_ location: String, options: TargetOptions = TargetOptions()) throws -> any OriginalSite {
        guard let scheme = TargetStoreOpeners.scheme(of: location) else { return LocalOriginalSite(directory: location) }
        guard let opener = openers.withLock({ $0[scheme] }) else {
            throw ReplicaError("unsupported original site \(location): use a directory or replicafs://HOST:PORT", code: .badRequest)
        }
        return try opener(location, options)
    }
}
