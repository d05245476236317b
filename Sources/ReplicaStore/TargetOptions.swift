/// How to reach a target store beyond its `--target` text: the PKI directory for a receiver on
/// another host (`replicafs://`), the endpoint and credentials of an object store (`s3://`),
/// throttling and client-side encryption. Saved with a protected VM, so the daemon opens its
/// target the way `protect` did. Every field is optional; nil means the documented default.
public struct TargetOptions: Codable, Sendable, Equatable {
    /// PKI directory (CA, this host's certificate and key); nil is `/etc/replicafs/pki`.
    public var pki: String?
    /// Object-store endpoint URL; nil is `AWS_ENDPOINT_URL`.
    public var s3Endpoint: String?
    /// Object-store region; nil is `AWS_REGION`, then `us-east-1`.
    public var s3Region: String?
    /// An AWS-style credentials file; nil is the environment, then `~/.aws/credentials`.
    public var credentialsFile: String?
    /// Bandwidth limit or schedule ("20MB/s", "08:00-18:00=10MB/s,*=unlimited"); nil is none.
    public var maxBandwidth: String?
    /// Key file for client-side encryption (object store); nil is none.
    public var encryptKeyFile: String?

    public init(pki: String? = nil, s3Endpoint: String? = nil, s3Region: String? = nil, credentialsFile: String? = nil,
                maxBandwidth: String? = nil, encryptKeyFile: String? = nil) {
        self.pki = pki
        self.s3Endpoint = s3Endpoint
        self.s3Region = s3Region
        self.credentialsFile = credentialsFile
        self.maxBandwidth = maxBandwidth
        self.encryptKeyFile = encryptKeyFile
    }

    /// These options with every field `other` sets taking its place (flags given to a command
    /// over the options saved with a VM).
    public func overridden(by other: TargetOptions) -> TargetOptions {
        TargetOptions(pki: other.pki ?? pki, s3Endpoint: other.s3Endpoint ?? s3Endpoint, s3Region: other.s3Region ?? s3Region,
                      credentialsFile: other.credentialsFile ?? credentialsFile, maxBandwidth: other.maxBandwidth ?? maxBandwidth,
                      encryptKeyFile: other.encryptKeyFile ?? encryptKeyFile)
    }
}
