import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program with its output captured, for recovery plan steps: a group's hooks and the
/// per-VM `replicafs failover|failback` runs, whose last stderr line becomes the report's error.
/// Output goes through temporary files, not pipes, and only the direct child is waited for: a
/// failover forks a mount daemon that keeps the descriptors open long after the command ends.
public struct CapturedCommand: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var ok: Bool { status == 0 }

    /// The line that says what went wrong: the last "replicafs: ..." or "Error: ..." line of
    /// stderr (without that prefix), else the last non-empty line of stderr, else of stdout.
    public var errorLine: String? {
        let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for prefix in ["replicafs: ", "Error: "] {
            if let line = lines.last(where: { $0.hasPrefix(prefix) }) { return String(line.dropFirst(prefix.count)) }
        }
        if let line = lines.last { return line }
        return stdout.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }).map(String.init)
    }

    /// Runs `/bin/sh -c command`.
    public static func shell(_ command: String, timeout: Double?) throws -> CapturedCommand {
        try run(["/bin/sh", "-c", command], timeout: timeout)
    }

    /// Runs `argv` (argv[0] is the program's path); throws when it cannot start or runs past
    /// `timeout` seconds (then it is killed).
    public static func run(_ argv: [String], timeout: Double?) throws -> CapturedCommand {
        var template = Array("/tmp/replicafs-cmd-XXXXXX".utf8CString)
        guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError.current("mkdtemp", "/tmp")
        }
        let dir = String(cString: dirPtr)
        defer {
            unlink(dir + "/out")
            unlink(dir + "/err")
            rmdir(dir)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, dir + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, dir + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cargs, environ)
        guard rc == 0 else { throw ReplicaError("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { throw SystemError.current("waitpid", argv[0]) }
            if let deadline, Date() > deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                throw ReplicaError("'\(argv.joined(separator: " "))' timed out after \(Int(timeout ?? 0)) s")
            }
            usleep(5_000)
        }
        let read = { (name: String) in
            String(decoding: (try? FileSystem.readFile(dir + "/" + name)) ?? [], as: UTF8.self)
        }
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return CapturedCommand(status: exit, stdout: read("out"), stderr: read("err"))
    }
}
