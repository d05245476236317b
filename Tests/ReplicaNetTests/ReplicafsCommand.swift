import Foundation
import Testing
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
        var template = Array("/tmp/rfs-net-sh-XXXXXX".utf8CString)
        guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            return Result(status: 127, stdout: "", stderr: "mkdtemp failed")
        }
        let dir = String(cString: dirPtr)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var env = ProcessInfo.processInfo.environment
        env["RFS"] = binary
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([String](["/bin/bash", "-c", command])).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, envp)
        guard rc == 0 else { return Result(status: 127, stdout: "", stderr: "posix_spawn: \(rc)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let read = { (name: String) in (try? String(contentsOfFile: dir + "/" + name, encoding: .utf8)) ?? "" }
        return Result(status: exit, stdout: read("out"), stderr: read("err"))
    }

    /// Runs a command that must succeed (an issue with its output otherwise); its stdout, trimmed.
    @discardableResult
    static func must(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let r = run(command)
        #expect(r.ok, "command failed (\(r.status)): \(command)\nstdout: \(r.stdout)\nstderr: \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
