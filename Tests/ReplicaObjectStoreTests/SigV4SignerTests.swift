import Foundation
import Testing
@testable import ReplicaObjectStore

/// The signer against AWS's published Signature Version 4 test suite (service "service", the
/// suite's key and date) and the S3 examples of AWS's documentation, then against botocore's
/// own signer for S3 requests with ranges, conditions and awkward keys.
@Suite(.timeLimit(.minutes(2)))
struct SigV4SignerTests {
    struct Vector: Sendable, CustomStringConvertible {
        var name: String
        var method: String
        var path: String
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body: String = ""
        var signature: String
        var description: String { name }
    }

    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)   // 20150830T123600Z
    static let suiteSigner = SigV4Signer(
        credentials: .init(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1", service: "service")
    static let host = ("Host", "example.amazonaws.com")
    static let date = ("X-Amz-Date", "20150830T123600Z")
    static let stsToken = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
    static let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

    /// aws-sig-v4-test-suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html),
    /// every case but the path-normalisation ones (S3 does not normalise paths).
    static let suite: [Vector] = [
        Vector(name: "get-vanilla", method: "GET", path: "/", headers: [host, date],
               signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(name: "get-vanilla-empty-query-key", method: "GET", path: "/", query: [("Param1", "value1")], headers: [host, date],
               signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
        Vector(name: "get-vanilla-query-order-key", method: "GET", path: "/",
               query: [("Param1", "value2"), ("Param1", "Value1")], headers: [host, date],
               signature: "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"),
        Vector(name: "get-vanilla-query-order-key-case", method: "GET", path: "/",
               query: [("Param2", "value2"), ("Param1", "value1")], headers: [host, date],
               signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(name: "get-vanilla-query-order-value", method: "GET", path: "/",
               query: [("Param1", "value2"), ("Param1", "value1")], headers: [host, date],
               signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
        Vector(name: "get-vanilla-query-unreserved", method: "GET", path: "/",
               query: [(unreserved, unreserved)], headers: [host, date],
               signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        Vector(name: "get-vanilla-utf8-query", method: "GET", path: "/", query: [("ሴ", "bar")], headers: [host, date],
               signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(name: "get-unreserved", method: "GET", path: "/" + unreserved, headers: [host, date],
               signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(name: "get-header-key-duplicate", method: "GET", path: "/",
               headers: [host, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1"), date],
               signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
        Vector(name: "get-header-value-order", method: "GET", path: "/",
               headers: [host, ("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"),
                         ("My-Header1", "value2"), date],
               signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
        Vector(name: "get-header-value-trim", method: "GET", path: "/",
               headers: [host, ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\""), date],
               signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        Vector(name: "post-vanilla", method: "POST", path: "/", headers: [host, date],
               signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "post-vanilla-query", method: "POST", path: "/", query: [("Param1", "value1")], headers: [host, date],
               signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
        Vector(name: "post-header-key-case", method: "POST", path: "/", headers: [("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
               signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(name: "post-header-key-sort", method: "POST", path: "/", headers: [host, ("My-Header1", "value1"), date],
               signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"),
        Vector(name: "post-header-value-case", method: "POST", path: "/", headers: [host, ("My-Header1", "VALUE1"), date],
               signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
        // These two as AWS published them: Content-Length not signed, `charset=utf8` (a later
        // repackaging of the suite added Content-Length to the request but kept the signatures).
        Vector(name: "post-x-www-form-urlencoded", method: "POST", path: "/",
               headers: [("Content-Type", "application/x-www-form-urlencoded"), host, date],
               body: "Param1=value1",
               signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
        Vector(name: "post-x-www-form-urlencoded-parameters", method: "POST", path: "/",
               headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf8"), host, date],
               body: "Param1=value1",
               signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"),
        Vector(name: "post-sts-header-before", method: "POST", path: "/",
               headers: [host, date, ("X-Amz-Security-Token", stsToken)],
               signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
        // The token added after signing: the signature is post-vanilla's.
        Vector(name: "post-sts-header-after", method: "POST", path: "/", headers: [host, date],
               signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ]

    @Test(arguments: suite)
    func awsTestSuite(_ v: Vector) {
        let auth = Self.suiteSigner.authorization(method: v.method, path: v.path, query: v.query, headers: v.headers,
                                                  payloadHash: SigV4Signer.Payload.hash(of: Array(v.body.utf8)).value,
                                                  date: Self.suiteDate)
        let names = Set(v.headers.map { $0.0.lowercased() }).sorted().joined(separator: ";")
        #expect(auth == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=\(names), Signature=\(v.signature)")
    }

    /// Intermediate steps of one suite case (get-vanilla-utf8-query), so a failure says where.
    @Test func suiteCanonicalRequestAndStringToSign() {
        let (creq, signed) = Self.suiteSigner.canonicalRequest(method: "GET", path: "/", query: [("ሴ", "bar")],
                                                               headers: [Self.host, Self.date],
                                                               payloadHash: SigV4Signer.Payload.empty.value)
        #expect(signed == "host;x-amz-date")
        #expect(creq == "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let sts = Self.suiteSigner.stringToSign(canonicalRequest: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                                                + "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                                date: Self.suiteDate)
        #expect(sts == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
    }

    // The S3 examples of "Authenticating Requests: Using the Authorization Header" (AWS S3 API
    // reference): examplebucket, 20130524T000000Z, the documentation's example key.
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)
    static let s3Signer = SigV4Signer(
        credentials: .init(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1")

    @Test func s3GetObjectExample() {
        let s = Self.s3Signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [],
                                   headers: [("Range", "bytes=0-9")], payload: .empty, date: Self.s3Date)
        #expect(s.first { $0.0 == "Authorization" }?.1 == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(s.first { $0.0 == "x-amz-date" }?.1 == "20130524T000000Z")
    }

    @Test func s3PutObjectExample() {
        let body = Array("Welcome to Amazon S3.".utf8)
        let payload = SigV4Signer.Payload.hash(of: body)
        #expect(payload.value == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        // `$` in the key is encoded (%24) in the canonical URI.
        let s = Self.s3Signer.sign(method: "PUT", host: "examplebucket.s3.amazonaws.com", path: "/test$file.text", query: [],
                                   headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
                                   payload: payload, date: Self.s3Date)
        #expect(s.first { $0.0 == "Authorization" }?.1.hasSuffix(
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
            + "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true)
    }

    @Test func s3QueryExamples() {
        let lifecycle = Self.s3Signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/",
                                           query: [("lifecycle", "")], headers: [], payload: .empty, date: Self.s3Date)
        #expect(lifecycle.last?.1.hasSuffix("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == true)
        let list = Self.s3Signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/",
                                      query: [("prefix", "J"), ("max-keys", "2")], headers: [], payload: .empty, date: Self.s3Date)
        #expect(list.last?.1.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
    }

    @Test func encodingRules() {
        #expect(SigV4Signer.encode("a b+c/d=é~", keepSlash: true) == "a%20b%2Bc/d%3D%C3%A9~")
        #expect(SigV4Signer.encode("a/b", keepSlash: false) == "a%2Fb")
        #expect(SigV4Signer.encodedQuery([("uploads", ""), ("prefix", "x y")]) == "prefix=x%20y&uploads=")
        #expect(SigV4Signer.encodedPath("") == "/")
    }

    /// The same S3 requests signed here and by botocore's S3SigV4Auth (python3), keys with
    /// spaces, `+`, `%`, unicode and `//`, ranges, conditions, multipart queries, a session
    /// token: every Authorization header equal.
    @Test func matchesBotocore() throws {
        struct Case { var method: String; var key: String; var query: [(String, String)]; var headers: [(String, String)]; var body: String }
        let cases: [Case] = [
            Case(method: "GET", key: "logs/disk 0/a+b%c.hrl", query: [], headers: [("Range", "bytes=100-8388707")], body: ""),
            Case(method: "PUT", key: "catalog/é ü/ሴ//x", query: [], headers: [("If-None-Match", "*")], body: "catalog v1"),
            Case(method: "PUT", key: "p/obj", query: [("partNumber", "3"), ("uploadId", "2~abc/DEF+x")],
                 headers: [("If-Match", "\"0123abcd\"")], body: "part"),
            Case(method: "GET", key: "", query: [("list-type", "2"), ("prefix", "vm 1/"), ("continuation-token", "a/b+c==")],
                 headers: [], body: ""),
            Case(method: "POST", key: "big object", query: [("uploads", "")], headers: [], body: ""),
            Case(method: "HEAD", key: "!'()*&$@=;:,?", query: [], headers: [], body: ""),
        ]
        let script = """
        import json, sys
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        from botocore.utils import percent_encode
        out = []
        for c in json.load(sys.stdin):
            url = "http://127.0.0.1:7480/bucket/" + percent_encode(c["key"], safe="/~")
            if c["query"]:
                url += "?" + "&".join(percent_encode(k) + ("=" + percent_encode(v) if v else "") for k, v in c["query"])
            req = AWSRequest(method=c["method"], url=url, data=c["body"].encode(), headers=dict(c["headers"]))
            S3SigV4Auth(Credentials("AKIDTEST", "secret/Key+1", "tok/en=="), "s3", "eu-west-2").add_auth(req)
            out.append({"date": req.headers["X-Amz-Date"], "auth": req.headers["Authorization"],
                        "sha": req.headers["X-Amz-Content-SHA256"]})
        print(json.dumps(out))
        """
        let input = try JSONSerialization.data(withJSONObject: cases.map { c -> [String: Any] in
            ["method": c.method, "key": c.key, "query": c.query.map { [$0.0, $0.1] }, "headers": c.headers.map { [$0.0, $0.1] },
             "body": c.body]
        })
        let output = try runPython(script, input: input)
        let results = try #require(try JSONSerialization.jsonObject(with: output) as? [[String: String]])
        try #require(results.count == cases.count)
        let signer = SigV4Signer(credentials: .init(accessKeyID: "AKIDTEST", secretAccessKey: "secret/Key+1", sessionToken: "tok/en=="),
                                 region: "eu-west-2")
        for (c, r) in zip(cases, results) {
            let stamp = Array(try #require(r["date"]))   // yyyyMMdd'T'HHmmss'Z'
            func field(_ from: Int, _ count: Int) -> Int { Int(String(stamp[from..<from + count]))! }
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let date = try #require(calendar.date(from: DateComponents(year: field(0, 4), month: field(4, 2), day: field(6, 2),
                                                                       hour: field(9, 2), minute: field(11, 2), second: field(13, 2))))
            #expect(SigV4Signer.amzDate(date) == String(stamp))
            let payload = SigV4Signer.Payload.hash(of: Array(c.body.utf8))
            #expect(payload.value == r["sha"], "\(c.method) \(c.key)")
            let headers = signer.sign(method: c.method, host: "127.0.0.1:7480", path: "/bucket/" + c.key, query: c.query,
                                      headers: c.headers, payload: payload, date: date)
            #expect(headers.first { $0.0 == "Authorization" }?.1 == r["auth"], "\(c.method) \(c.key) \(c.query)")
        }
    }

    private func runPython(_ script: String, input: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "python3 with botocore failed")
        return data
    }
}
