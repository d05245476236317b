/// Small text helpers shared by every layer.
extension String {
    public var nonEmpty: String? { isEmpty ? nil : self }

    /// The directory part of a path ("." when there is none), the directory a new entry's
    /// fsync goes to.
    public var directoryPart: String { String(self[..<(lastIndex(of: "/") ?? startIndex)]).nonEmpty ?? "." }
}

extension String {
    public func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

extension Character {
    public var isASCIIDigitCharacter: Bool { ("0"..."9").contains(self) }
}
