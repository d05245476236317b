import Foundation
import Testing
import ReplicaTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Runs the real `replicafs` binary (built beside the test bundle, or $REPLICAFS_BIN) through
/// bash for tests that need the command line (`serve`, `export`, `failover`): output through
/// temporary files, the child reaped with waitpid.
enum ReplicafsCommand {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var ok: Bool { status == 0 }
    }

    static let binary: String = {
        if let bin = ProcessInfo.processInfo.environment["REPLICAFS_BIN"] { return bin }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("replicafs").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return ".build/debug/replicafs"
    }()

    /// Runs `command` with bash, `$RFS` naming the binary.
    @discardableResult
    static func run(_ command: String) -> Result {
        let r = BashRunner.run(command, environment: ["RFS": binary])
        return Result(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    /// Runs a command that must succeed (an issue with its output otherwise); its stdout, trimmed.
    @discardableResult
    static func must(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run(command)
        #expect(r.ok, "command failed (\(r.status)): \(command)\nstdout: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
