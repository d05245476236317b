import NIOSSL
import Synchronization

/// Senders' names by certificate (its DER bytes): the receiver asks the sender's name at every
/// request, and parsing the certificate each time (swift-certificates) showed in its profile.
/// The handshake verified the certificate; this only remembers what it names. Bounded: full,
/// it starts over (a site has a handful of senders).
public final class PeerNameCache: Sendable {
    public static let shared = PeerNameCache()
    static let capacity = 256

    private let names = Mutex<[[UInt8]: String?]>([:])

    public init() {}

    /// `PKIDirectory.peerName(of:)`, parsed once per certificate.
    public func name(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes() else { return PKIDirectory.peerName(of: certificate) }
        if let known = names.withLock({ $0[der] }) { return known }
        let name = PKIDirectory.peerName(of: certificate)
        names.withLock { table in
            if table.count >= Self.capacity { table.removeAll() }
            table[der] = .some(name)
        }
        return name
    }
}
