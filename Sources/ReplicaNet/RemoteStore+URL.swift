import ReplicaStore
import ReplicaSystem

extension RemoteStore {
    /// Opens `replicafs://HOST[:PORT]` (default port 8084) with mutual TLS from the PKI
    /// directory of `options` (default /etc/replicafs/pki): this host's certificate, the site
    /// CA, and the receiver's certificate checked against HOST.
    public convenience init(url: String, options: TargetOptions) throws {
        let address = try ReceiverAddress(url: url)
        // Parsed once per version of the PKI files, not at every open (the replicator opens per tick).
        let tls = try PKIConfigurationCache.clientTLSConfiguration(PKIDirectory(path: options.pki))
        let location = ReplicaNet.scheme + "://" + (address.host.contains(":") ? "[\(address.host)]" : address.host) + ":\(address.port)"
        let client = ReceiverClient(host: address.host, port: address.port, tls: tls,
                                    tlsFailure: { TLSFailure.replicaError($0, peer: location) })
        self.init(client: client)
    }
}
