import ReplicaStore
import NIOCore
import NIOSSL

extension ReceiverServer {
    /// The sender's name from its TLS certificate (common name, else first DNS name), which
    /// the site CA vouched for in the handshake; nil on a plain connection.
    /// Asked per request: the name is parsed once per certificate (`PeerNameCache`).
    public static let certificateName: PeerName = { channel in
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return PeerNameCache.shared.name(of: certificate)
    }

    /// A receiver serving `store` with mutual TLS from the PKI directory: only senders with a
    /// certificate from the site CA get in, and each VM stays with the sender that wrote it first.
    public convenience init(store: DirectoryStore, listen: ReceiverAddress, pki: PKIDirectory) throws {
        try self.init(store: store, host: listen.host, port: listen.port, tls: try pki.serverTLSConfiguration(),
                      peerName: ReceiverServer.certificateName)
    }

    /// The same in front of a prepared receiver (any store).
    public convenience init(receiver: ReceiverStore, listen: ReceiverAddress, pki: PKIDirectory) throws {
        self.init(receiver: receiver, host: listen.host, port: listen.port, tls: try pki.serverTLSConfiguration(),
                  peerName: ReceiverServer.certificateName)
    }
}
