import Foundation
import ReplicaStore
import ReplicaSystem

/// Where an S3 API answers and as whom: endpoint, region and credentials, looked up the way
/// the AWS tools do so a user's existing setup works unchanged.
///
/// - endpoint: `TargetOptions.s3Endpoint`, else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`,
///   else AWS's own `https://s3.<region>.amazonaws.com`. Requests are path-style
///   (`/bucket/key`), which Ceph RGW needs and AWS still serves.
/// - region: `TargetOptions.s3Region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else
///   `us-east-1` (RGW accepts any region in the signature unless zonegroups are set up).
/// - credentials: the file `TargetOptions.credentialsFile` when named (profile `AWS_PROFILE`
///   or `default`); else `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
///   `AWS_SESSION_TOKEN`); else `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`.
public struct S3Configuration: Sendable, Equatable {
    public var endpoint: S3Endpoint
    public var region: String
    public var credentials: SigV4Signer.Credentials

    public init(endpoint: S3Endpoint, region: String, credentials: SigV4Signer.Credentials) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
    }

    /// The configuration `options` and `environment` give; a clear `.nonRecoverable` error
    /// when no credentials are found or the endpoint is not an http(s) URL.
    public static func resolve(options: TargetOptions,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Configuration {
        func env(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        let region = options.s3Region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1"
        let endpointText = options.s3Endpoint ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL")
            ?? "https://s3.\(region).amazonaws.com"
        let endpoint = try S3Endpoint(parsing: endpointText)
        let profile = env("AWS_PROFILE") ?? "default"
        let credentials: SigV4Signer.Credentials
        if let file = options.credentialsFile {
            credentials = try S3CredentialsFile.read(file, profile: profile)
        } else if let key = env("AWS_ACCESS_KEY_ID"), let secret = env("AWS_SECRET_ACCESS_KEY") {
            credentials = .init(accessKeyID: key, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN"))
        } else {
            let file = env("AWS_SHARED_CREDENTIALS_FILE") ?? ((env("HOME") ?? NSHomeDirectory()) + "/.aws/credentials")
            guard FileManager.default.fileExists(atPath: file) else {
                throw ReplicaError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a credentials file "
                                   + "(--credentials-file; \(file) does not exist)", kind: .nonRecoverable)
            }
            credentials = try S3CredentialsFile.read(file, profile: profile)
        }
        return S3Configuration(endpoint: endpoint, region: region, credentials: credentials)
    }
}
