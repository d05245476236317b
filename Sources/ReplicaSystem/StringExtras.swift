/// Small text helpers shared by every layer.
extension String {
    public var nonEmpty: String? { isEmpty ? nil : self }
}

extension String {
    public func leftPadded(_ width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

extension Character {
    public var isASCIIDigitCharacter: Bool { ("0"..."9").contains(self) }
}
