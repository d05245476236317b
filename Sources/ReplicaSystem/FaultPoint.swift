import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A test hook: a named step inside a multi-step update where a test can hold the process, so
/// a `kill -9` lands exactly at that step instead of racing for it. Off unless the environment
/// asks for it (production never sets these variables):
///
/// - `REPLICAFS_FAULT` lists the steps that may stop (comma-separated, e.g. `commit-after-copy`,
///   `rotate-before-checkpoint`);
/// - `REPLICAFS_FAULT_DIR` is a directory the test owns.
///
/// A listed step fires only while the test has armed it by creating `<dir>/<step>.arm` (so
/// the commits before the one under test pass). When it fires it writes `<dir>/<step>.reached`
/// (the pid, written atomically) and blocks while the arm file exists (at most ten minutes):
/// the test waits for the marker, then kills the process there, or removes the arm file to
/// let it go on. The steps are listed in docs/target-store.md ("Test hooks").
public enum FaultPoint {
    public static let stepsVariable = "REPLICAFS_FAULT"
    public static let directoryVariable = "REPLICAFS_FAULT_DIR"

    /// The steps enabled by the environment and the directory of their files; nil when off.
    private static let configuration: (steps: Set<String>, directory: String)? = {
        let env = ProcessInfo.processInfo.environment
        guard let list = env[stepsVariable], !list.isEmpty, let dir = env[directoryVariable], !dir.isEmpty else { return nil }
        return (Set(list.split(separator: ",").map { String($0) }), dir)
    }()

    /// Called by the code at `step`: returns at once unless the environment enables the step
    /// and the test armed it; otherwise announces the step and holds the calling thread there.
    public static func reach(_ step: String) {
        guard let config = configuration, config.steps.contains(step) else { return }
        let arm = config.directory + "/" + step + ".arm"
        guard FileSystem.exists(arm) else { return }
        FileHandle.standardError.write(Data("replicafs: test hook: holding at fault point \(step) (pid \(getpid()))\n".utf8))
        let pid = Array("\(getpid())\n".utf8)
        try? pid.withUnsafeBytes { try FileSystem.writeAtomically(config.directory + "/" + step + ".reached", $0) }
        let deadline = Clock.nowNanos() + 600 * 1_000_000_000
        while FileSystem.exists(arm) && Clock.nowNanos() < deadline { usleep(20_000) }
    }
}
