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
    typealias Result = BashRunner.Result

    static var binary: String { BashRunner.replicafs }

    /// Runs `command` with bash, `$RFS` naming the binary.
    @discardableResult
    static func run(_ command: String) -> Result {
        BashRunner.run(command, environment: ["RFS": binary])
    }

    /// Runs a command that must succeed (an issue with its output otherwise); its stdout, trimmed.
    @discardableResult
    static func must(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run(command)
        #expect(r.ok, "command failed (\(r.status)): \(command)\nstdout: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
