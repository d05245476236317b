import Foundation

/// The seed of a test that makes random decisions: `$REPLICAFS_TEST_SEED` when set (decimal
/// or 0x-hex), to re-run a failure exactly, else a fresh one. Printed either way, so every run
/// says how to repeat it.
public enum TestSeed {
    public static let variable = "REPLICAFS_TEST_SEED"

    public static func make(_ test: String = #function) -> UInt64 {
        let seed: UInt64
        if let text = ProcessInfo.processInfo.environment[variable], let given = parse(text) {
            seed = given
        } else {
            seed = UInt64.random(in: 0...UInt64.max)
        }
        print("\(test): random seed \(seed) (re-run with \(variable)=\(seed))")
        return seed
    }

    public static func parse(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces)
        return t.hasPrefix("0x") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t)
    }
}
