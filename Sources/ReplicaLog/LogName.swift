import ReplicaSystem
/// Change-log file names: `<image>.<sequence, 6+ digits>.hrl`, next to the image.
public enum LogName {
    public static let suffix = ".hrl"
    /// The longest image name served (bytes): its log names (`.<sequence>.hrl`, the sequence
    /// growing past 6 digits) and their names once retired (`<n>-` in front) must fit in a
    /// file name's 255 bytes. Checked before any log is created.
    public static let maxImageNameBytes = 255 - 32

    public static func make(image: String, sequence: UInt64) -> String {
        "\(image).\(String(sequence).leftPadded(6))\(suffix)"
    }

    /// Splits a log file name into its image name and sequence, or nil if it is not one.
    public static func parse(_ name: String) -> (image: String, sequence: UInt64)? {
        guard name.hasSuffix(suffix) else { return nil }
        let stem = name.dropLast(suffix.count)
        guard let dot = stem.lastIndex(of: ".") else { return nil }
        let digits = stem[stem.index(after: dot)...]
        guard digits.count >= 6, digits.allSatisfy(\.isASCIIDigitCharacter), let seq = UInt64(digits) else { return nil }
        let image = String(stem[..<dot])
        return image.isEmpty ? nil : (image, seq)
    }

    public static func isLog(_ name: String) -> Bool { name.hasSuffix(suffix) }
}
