import Foundation

/// Parses the ISO-8601 times the commands and plans take (`2026-11-23T18:30:00Z`, with an
/// offset or fractional seconds), refusing impossible ones: Foundation's formatter rolls
/// `2026-02-30` over to March 2, which would select a point or start time nobody asked for.
public enum ISOTime {
    /// The one form of every time the commands print and the daemons report: ISO-8601 UTC
    /// with milliseconds (`2026-11-23T18:30:00.123Z`), which `parse` reads back.
    public static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// `format` of a time in nanoseconds since the epoch.
    public static func format(nanos: UInt64) -> String { format(Date(timeIntervalSince1970: Double(nanos) / 1e9)) }

    /// The date, or nil when the text is not an ISO-8601 date-time or names a day, hour,
    /// minute or second that does not exist.
    public static func parse(_ text: String) -> Date? {
        guard fieldsAreValid(text) else { return nil }
        if let date = ISO8601DateFormatter().date(from: text) { return date }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text)
    }

    /// Checks the leading `YYYY-MM-DDTHH:MM:SS` against the calendar (leap years included).
    static func fieldsAreValid(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count >= 19, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":") else { return false }
        func number(_ range: Range<Int>) -> Int? {
            var n = 0
            for i in range {
                guard b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else { return nil }
                n = n * 10 + Int(b[i] - UInt8(ascii: "0"))
            }
            return n
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19) else { return false }
        guard (1...12).contains(month), hour < 24, minute < 60, second < 60 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day)
    }
}
