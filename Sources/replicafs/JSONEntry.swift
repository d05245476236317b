/// An object of a JSON array that mixes kinds of entries (`status --json`), with its kind in
/// one field, `entry`, beside the object's own fields (docs/json.md).
struct JSONEntry<Value: Encodable>: Encodable {
    var entry: String
    var value: Value

    init(_ entry: String, _ value: Value) {
        self.entry = entry
        self.value = value
    }

    private enum Key: String, CodingKey { case entry }

    func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(entry, forKey: .entry)
    }
}
