import ReplicaSystem

/// A parsed `s3://BUCKET[/PREFIX]` target. The bucket name follows S3's naming rules (3 to 63
/// characters: lower-case letters, digits, dots and hyphens, starting and ending with a letter
/// or digit), which Ceph RGW also enforces; the prefix is every key's leading part and ends
/// with `/` when not empty. Anything else is refused with one line naming the problem, before
/// any request is made.
public struct S3URL: Sendable, Equatable, CustomStringConvertible {
    public static let scheme = "s3"

    public let bucket: String
    /// "" or "a/b/" (always ending in a slash).
    public let prefix: String

    public init(bucket: String, prefix: String = "") {
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    public var description: String { "s3://\(bucket)" + (prefix.isEmpty ? "" : "/" + prefix.dropLast()) }

    /// Parses `text`; throws a `.badRequest` error saying what is wrong.
    public init(parsing text: String) throws {
        func bad(_ why: String) -> ReplicaError {
            ReplicaError("malformed S3 target '\(text)': \(why) (expected s3://BUCKET[/PREFIX])",
                         kind: .nonRecoverable, code: .badRequest)
        }
        guard text.hasPrefix("s3://") else { throw bad("it does not start with s3://") }
        let rest = text.dropFirst("s3://".count)
        if let c = rest.first(where: { $0 == "?" || $0 == "#" }) { throw bad("'\(c)' has no meaning in a target") }
        if rest.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == " " || $0 == "\\" }) {
            throw bad("it holds a space, backslash or control character")
        }
        let bucketEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let bucket = String(rest[..<bucketEnd])
        if bucket.isEmpty { throw bad("no bucket name") }
        if let why = Self.bucketNameProblem(bucket) { throw bad("bucket name '\(bucket)' \(why)") }
        var prefix = bucketEnd < rest.endIndex ? String(rest[rest.index(after: bucketEnd)...]) : ""
        if prefix.hasSuffix("/") { prefix.removeLast() }
        if !prefix.isEmpty {
            let segments = prefix.split(separator: "/", omittingEmptySubsequences: false)
            if segments.contains(where: { $0.isEmpty }) { throw bad("empty path segment (//) in the prefix") }
            if segments.contains(where: { $0 == "." || $0 == ".." }) { throw bad("'.' or '..' in the prefix") }
            if prefix.utf8.count > 512 { throw bad("prefix longer than 512 bytes") }
        }
        self.init(bucket: bucket, prefix: prefix)
    }

    /// Why `name` is not a valid bucket name, nil when it is.
    static func bucketNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.count < 3 || bytes.count > 63 { return "must be 3 to 63 characters long" }
        func alnum(_ b: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
        }
        if !bytes.allSatisfy({ alnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) {
            return "may hold only lower-case letters, digits, '.' and '-'"
        }
        if !alnum(bytes.first!) || !alnum(bytes.last!) { return "must start and end with a letter or digit" }
        if name.contains("..") { return "must not hold '..'" }
        let parts = name.split(separator: ".")
        if parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) { return "must not look like an IP address" }
        return nil
    }
}
