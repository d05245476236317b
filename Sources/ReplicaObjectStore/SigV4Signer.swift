import Crypto
import Foundation

/// AWS Signature Version 4 (the signing every S3 API takes, Ceph RGW's among them): canonical
/// request, string to sign, the signing key derived by HMAC-SHA256 from the secret, date,
/// region and service. No S3 SDK exists among the packages, so this is the whole of it, kept
/// apart and tested against AWS's published test vectors and botocore's signer.
///
/// Paths and query items are given unencoded; the signer encodes them by S3's rules
/// (`encode`), and the client sends exactly those encoded forms (`encodedPath`, `encodedQuery`),
/// so what is signed is what goes on the wire.
public struct SigV4Signer: Sendable {
    /// An access key, its secret and, for temporary credentials, the session token.
    public struct Credentials: Sendable, Equatable {
        public var accessKeyID: String
        public var secretAccessKey: String
        public var sessionToken: String?

        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }
    }

    /// What the signature says about the body: its SHA-256 (the server checks the bytes it got
    /// against it) or nothing (`UNSIGNED-PAYLOAD`, S3 only).
    public enum Payload: Sendable, Equatable {
        case unsigned
        case sha256(hex: String)

        /// The SHA-256 of `bytes`.
        public static func hash<B: DataProtocol>(of bytes: B) -> Payload {
            .sha256(hex: SigV4Signer.hex(SHA256.hash(data: bytes)))
        }
        /// The empty body's hash, for GET, HEAD and DELETE.
        public static let empty = Payload.sha256(hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

        public var value: String {
            switch self {
            case .unsigned: return "UNSIGNED-PAYLOAD"
            case .sha256(let hex): return hex
            }
        }
    }

    public let credentials: Credentials
    public let region: String
    public let service: String

    public init(credentials: Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers an S3 request carries besides its own: `x-amz-date`,
    /// `x-amz-content-sha256`, the session token when there is one, and `Authorization`
    /// (signing `host` and every header in `headers`).
    public func sign(method: String, host: String, path: String, query: [(String, String)],
                     headers: [(String, String)], payload: Payload, date: Date) -> [(String, String)] {
        var added: [(String, String)] = [
            ("x-amz-date", Self.amzDate(date)),
            ("x-amz-content-sha256", payload.value),
        ]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        let all = [("host", host)] + headers + added
        let auth = authorization(method: method, path: path, query: query, headers: all,
                                 payloadHash: payload.value, date: date)
        return added + [("Authorization", auth)]
    }

    /// The `Authorization` header for a request whose headers (`host` and `x-amz-date` among
    /// them) are all signed.
    public func authorization(method: String, path: String, query: [(String, String)],
                              headers: [(String, String)], payloadHash: String, date: Date) -> String {
        let (request, signedHeaders) = canonicalRequest(method: method, path: path, query: query,
                                                        headers: headers, payloadHash: payloadHash)
        let signature = self.signature(stringToSign: stringToSign(canonicalRequest: request, date: date), date: date)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(date)), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
    }

    /// The canonical request and its signed-header list: method, encoded path, sorted encoded
    /// query, lower-cased sorted headers with trimmed values (duplicates joined by commas),
    /// the signed-header names, the payload hash.
    public func canonicalRequest(method: String, path: String, query: [(String, String)],
                                 headers: [(String, String)], payloadHash: String) -> (String, String) {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            merged[name.lowercased(), default: []].append(Self.trimmed(value))
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let text = [method, Self.encodedPath(path), Self.encodedQuery(query), canonicalHeaders,
                    signedHeaders, payloadHash].joined(separator: "\n")
        return (text, signedHeaders)
    }

    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        ["AWS4-HMAC-SHA256", Self.amzDate(date), scope(date),
         Self.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
    }

    /// HMAC chain: "AWS4"+secret → date → region → service → "aws4_request".
    public func signingKey(date: Date) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [Self.dateStamp(date), region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    public func signature(stringToSign: String, date: Date) -> String {
        Self.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(date: date)))
    }

    /// `yyyymmdd/region/service/aws4_request`.
    public func scope(_ date: Date) -> String {
        "\(Self.dateStamp(date))/\(region)/\(service)/aws4_request"
    }

    // MARK: Encoding

    /// Percent-encodes every byte of the UTF-8 form except the unreserved `A-Z a-z 0-9 - . _ ~`
    /// (and `/` when `keepSlash`), upper-case hex: S3's URI encoding, for paths and query items.
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        let digits = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The path as sent and signed: each segment encoded once, slashes kept, no normalisation
    /// (S3 keys may hold `//` and `..`).
    public static func encodedPath(_ path: String) -> String {
        path.isEmpty ? "/" : encode(path, keepSlash: true)
    }

    /// The query as sent and signed: names and values encoded, sorted by name then value,
    /// `name=value` joined by `&` (an empty value keeps its `=`).
    public static func encodedQuery(_ items: [(String, String)]) -> String {
        items.map { (encode($0.0, keepSlash: false), encode($0.1, keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    // MARK: Helpers

    /// Leading and trailing blanks removed, runs of spaces folded to one.
    static func trimmed(_ value: String) -> String {
        var out = ""
        var lastSpace = false
        for c in value.trimmingCharacters(in: .whitespaces) {
            if c == " " {
                if !lastSpace { out.append(c) }
                lastSpace = true
            } else {
                out.append(c)
                lastSpace = false
            }
        }
        return out
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        let t = utc(date)
        return pad(t.year, 4) + pad(t.month, 2) + pad(t.day, 2) + "T" + pad(t.hour, 2) + pad(t.minute, 2) + pad(t.second, 2) + "Z"
    }

    /// `yyyyMMdd` in UTC.
    public static func dateStamp(_ date: Date) -> String {
        let t = utc(date)
        return pad(t.year, 4) + pad(t.month, 2) + pad(t.day, 2)
    }

    private static func pad(_ n: Int, _ width: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func utc(_ date: Date) -> (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return (c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    public static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }
}
