import Foundation
import ReplicaSystem

/// A scratch directory per fuzzing process, in memory (/dev/shm) where there is one: each
/// input writes files, and tmpfs keeps that (and its fsyncs) fast.
public enum Scratch {
    public static let directory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = base + "/replicafs-fuzz-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: Scratch.directory) }
        return dir
    }()

    /// Empties `name` in the scratch directory and returns its path.
    public static func fresh(_ name: String) -> String {
        let path = directory + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public static func write(_ bytes: [UInt8], to path: String) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { fatalError("cannot write \(path)") }
    }

    /// The file's bytes, read through the project's own layer: Foundation's
    /// `FileManager.contents(atPath:)` leaks a buffer on some reads, which LeakSanitizer
    /// reported as a finding of the target.
    public static func read(_ path: String) -> [UInt8] {
        do { return try FileSystem.readFile(path) } catch { fatalError("cannot read \(path): \(error)") }
    }

    /// Stops the run with `message` (libFuzzer saves the input that led here).
    public static func fail(_ message: String) -> Never {
        fatalError("fuzz invariant broken: \(message)")
    }
}
