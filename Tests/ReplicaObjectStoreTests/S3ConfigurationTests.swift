import Foundation
import ReplicaStore
import ReplicaSystem
import Testing
@testable import ReplicaObjectStore

/// `s3://` targets, endpoints and the credentials lookup: what is accepted, what is refused
/// with a clear one-line error, and which source wins.
@Suite(.timeLimit(.minutes(1)))
struct S3ConfigurationTests {
    @Test func goodTargets() throws {
        #expect(try S3URL(parsing: "s3://bucket") == S3URL(bucket: "bucket", prefix: ""))
        #expect(try S3URL(parsing: "s3://bucket/") == S3URL(bucket: "bucket", prefix: ""))
        #expect(try S3URL(parsing: "s3://my.bucket-1/vms/prod") == S3URL(bucket: "my.bucket-1", prefix: "vms/prod/"))
        #expect(try S3URL(parsing: "s3://b12/é/x/") == S3URL(bucket: "b12", prefix: "é/x/"))
        #expect(try S3URL(parsing: "s3://b12/vms/prod/").description == "s3://b12/vms/prod")
    }

    @Test(arguments: [
        ("bucket/prefix", "does not start with s3://"),
        ("s3:/bucket", "does not start with s3://"),
        ("S3://bucket", "does not start with s3://"),
        ("s3://", "no bucket name"),
        ("s3:///prefix", "no bucket name"),
        ("s3://ab", "must be 3 to 63 characters long"),
        ("s3://My_Bucket", "may hold only lower-case letters, digits, '.' and '-'"),
        ("s3://-bucket", "must start and end with a letter or digit"),
        ("s3://a..b", "must not hold '..'"),
        ("s3://192.168.1.1", "must not look like an IP address"),
        ("s3://bucket/a//b", "empty path segment (//) in the prefix"),
        ("s3://bucket/a/../b", "'.' or '..' in the prefix"),
        ("s3://bucket/p?versionId=1", "'?' has no meaning in a target"),
        ("s3://bucket/p q", "it holds a space, backslash or control character"),
        ("s3://bucket:9000/p", "may hold only lower-case letters, digits, '.' and '-'"),
    ])
    func malformedTargets(_ text: String, _ why: String) {
        let error = #expect(throws: ReplicaError.self) { try S3URL(parsing: text) }
        #expect(error?.description.hasPrefix("malformed S3 target '\(text)': ") == true)
        #expect(error?.description.hasSuffix("\(why) (expected s3://BUCKET[/PREFIX])") == true, "\(error?.description ?? "")")
        #expect(error?.code == .badRequest)
    }

    @Test func endpoints() throws {
        let e = try S3Endpoint(parsing: "http://127.0.0.1:7480/")
        #expect(e.scheme == "http" && e.host == "127.0.0.1" && e.port == 7480 && e.hostHeader == "127.0.0.1:7480")
        #expect(try S3Endpoint(parsing: "https://s3.example.com").hostHeader == "s3.example.com")
        #expect(try S3Endpoint(parsing: "https://s3.example.com:443").description == "https://s3.example.com")
        #expect(try S3Endpoint(parsing: "http://[::1]:9000").hostHeader == "[::1]:9000")
        for bad in ["127.0.0.1:7480", "ftp://h", "http://", "http://h:0", "http://h:x", "http://h/path", "http://u@h"] {
            let error = #expect(throws: ReplicaError.self, "\(bad)") { try S3Endpoint(parsing: bad) }
            #expect(error?.description.hasPrefix("malformed S3 endpoint '\(bad)'") == true)
        }
    }

    @Test func lookupOrder() throws {
        let dir = "/tmp/s3-client-creds-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/.aws", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        # comment
        [default]
        aws_access_key_id = HOMEKEY
        aws_secret_access_key = home/secret
        [other]
        aws_access_key_id=OTHERKEY
        aws_secret_access_key=other
        aws_session_token = tok
        """.write(toFile: dir + "/.aws/credentials", atomically: true, encoding: .utf8)
        try "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = f\n"
            .write(toFile: dir + "/named", atomically: true, encoding: .utf8)

        // Nothing set: the home file, AWS's endpoint for the default region.
        let home = try S3Configuration.resolve(options: TargetOptions(), environment: ["HOME": dir])
        #expect(home.credentials == .init(accessKeyID: "HOMEKEY", secretAccessKey: "home/secret"))
        #expect(home.region == "us-east-1" && home.endpoint.description == "https://s3.us-east-1.amazonaws.com")
        // The environment's keys before the home file; AWS_PROFILE picks a section.
        let env = ["HOME": dir, "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "e", "AWS_SESSION_TOKEN": "t",
                   "AWS_ENDPOINT_URL": "http://127.0.0.1:7480", "AWS_REGION": "eu-1"]
        let fromEnv = try S3Configuration.resolve(options: TargetOptions(), environment: env)
        #expect(fromEnv.credentials == .init(accessKeyID: "ENVKEY", secretAccessKey: "e", sessionToken: "t"))
        #expect(fromEnv.region == "eu-1" && fromEnv.endpoint.description == "http://127.0.0.1:7480")
        #expect(try S3Configuration.resolve(options: TargetOptions(), environment: ["HOME": dir, "AWS_PROFILE": "other"]).credentials
                == .init(accessKeyID: "OTHERKEY", secretAccessKey: "other", sessionToken: "tok"))
        // A named file and the options win over the environment.
        let named = try S3Configuration.resolve(options: TargetOptions(s3Endpoint: "http://h:1", s3Region: "r", credentialsFile: dir + "/named"),
                                                environment: env)
        #expect(named.credentials.accessKeyID == "FILEKEY" && named.region == "r" && named.endpoint.description == "http://h:1")
    }

    @Test func missingCredentialsAreClear() throws {
        let none = #expect(throws: ReplicaError.self) {
            try S3Configuration.resolve(options: TargetOptions(), environment: ["HOME": "/nonexistent-home"])
        }
        #expect(none?.description == "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a credentials file "
                + "(--credentials-file; /nonexistent-home/.aws/credentials does not exist)")
        #expect(none?.kind == .nonRecoverable)
        let noProfile = #expect(throws: ReplicaError.self) { try S3CredentialsFile.parse("[x]\naws_access_key_id=a\n", profile: "default", path: "F") }
        #expect(noProfile?.description == "credentials file F has no profile [default]")
        let noSecret = #expect(throws: ReplicaError.self) { try S3CredentialsFile.parse("[default]\naws_access_key_id=a\n", profile: "default", path: "F") }
        #expect(noSecret?.description == "credentials file F, profile [default]: aws_access_key_id or aws_secret_access_key is missing")
        let unreadable = #expect(throws: ReplicaError.self) {
            try S3Configuration.resolve(options: TargetOptions(credentialsFile: "/nonexistent/creds"), environment: [:])
        }
        #expect(unreadable?.description.hasPrefix("cannot read the credentials file /nonexistent/creds") == true)
    }
}
