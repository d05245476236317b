import ArgumentParser
import ReplicaStore
import ReplicaSystem

/// How to reach an `s3://` target beyond the environment: its endpoint, region, an
/// AWS-style credentials file and the key file of its client-side encryption
/// (docs/object-store.md). `protect` saves them with the VM, so
/// the mount daemon and the failover commands open the bucket the same way.
struct ObjectStoreAccessOptions: ParsableArguments {
    @Option(help: "Endpoint URL of an s3:// target (default AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL).")
    var s3Endpoint: String?
    @Option(help: "Region of an s3:// target (default AWS_REGION, then us-east-1).")
    var s3Region: String?
    @Option(help: "AWS-style credentials file for an s3:// target (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials).")
    var credentialsFile: String?
    @Option(help: "Key file (32 random bytes, mode 0600) of an encrypted target: an s3:// target encrypted on this host (AES-256-GCM), or a store directory that `serve --encrypt-key-file` keeps encrypted at rest; only its path is saved, never the key.")
    var encryptKeyFile: String?

    /// Sets the given flags on `options` (the credentials file as an absolute path, so a
    /// daemon started elsewhere finds it); a named file that does not exist is refused.
    func apply(to options: inout TargetOptions) throws {
        if let s3Endpoint { options.s3Endpoint = s3Endpoint }
        if let s3Region { options.s3Region = s3Region }
        if let credentialsFile {
            guard FileSystem.exists(credentialsFile) else {
                throw ReplicaError("credentials file \(credentialsFile) does not exist", code: .badRequest)
            }
            options.credentialsFile = try FileSystem.realPath(credentialsFile)
        }
        if let encryptKeyFile {
            guard FileSystem.exists(encryptKeyFile) else {
                throw ReplicaError("key file \(encryptKeyFile) does not exist: make one with `head -c 32 /dev/urandom > \(encryptKeyFile) && chmod 600 \(encryptKeyFile)`",
                                   code: .badRequest)
            }
            _ = try ChunkCipher(keyFile: encryptKeyFile)  // a short or shared key file is refused now
            options.encryptKeyFile = try FileSystem.realPath(encryptKeyFile)
        }
    }

    /// The flags again, for a daemon this command starts.
    static func arguments(_ options: TargetOptions) -> [String] {
        (options.s3Endpoint.map { ["--s3-endpoint", $0] } ?? []) + (options.s3Region.map { ["--s3-region", $0] } ?? [])
            + (options.credentialsFile.map { ["--credentials-file", $0] } ?? [])
            + (options.encryptKeyFile.map { ["--encrypt-key-file", $0] } ?? [])
    }
}
