#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc/self/mountinfo to tell whether a path is a mountpoint and of what type.
public enum MountTable {
    public struct Mount: Sendable {
        public var mountpoint: String
        public var fsType: String
        public var source: String
        /// "major:minor" of the mounted filesystem.
        public var device: String
    }

    public static func mounts() -> [Mount] {
        guard let bytes = try? FileSystem.readFile("/proc/self/mountinfo") else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count > 6, let dash = parts.firstIndex(of: "-"), dash + 2 < parts.count else { return nil }
            return Mount(mountpoint: unescape(String(parts[4])), fsType: String(parts[dash + 1]),
                         source: unescape(String(parts[dash + 2])), device: String(parts[2]))
        }
    }

    /// The mount at exactly `path`, the last one if stacked.
    public static func mount(at path: String) -> Mount? { mounts().last { $0.mountpoint == path } }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
