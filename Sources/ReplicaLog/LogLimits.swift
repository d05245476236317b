/// The ranges a change log's numbers must stay within. A log's records carry checksums, but a
/// crafted log can carry valid checksums around absurd numbers: every field is checked against
/// these bounds when read, so no later arithmetic (offset + length, LSN + 1, sequence + 1, a
/// conversion to `off_t`) can overflow, and a bad log is refused with its byte offset instead.
public enum LogLimits {
    /// The largest image offset or size: what `off_t` can address.
    public static let maxImageBytes = UInt64(Int64.max)
    /// The largest sequence number, LSN or cut id. At a billion records a second a chain takes
    /// 146 years to reach it, and every `+ 1` or `+ 2` on such a number stays far from overflow.
    public static let maxCounter: UInt64 = 1 << 62

    /// Why the range `offset..<offset+length` is not addressable, or nil when it is.
    public static func rangeProblem(offset: UInt64, length: UInt64) -> String? {
        if offset > maxImageBytes { return "offset \(offset) is beyond the largest image size \(maxImageBytes)" }
        if length > maxImageBytes - offset { return "range of \(length) bytes at offset \(offset) ends beyond the largest image size \(maxImageBytes)" }
        return nil
    }
}
