import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Starts a replicafs daemon (this same binary, `--foreground --ready-fd 3`) as a new session
/// with its output in a log file, and waits for its one-line answer on the ready pipe:
/// `READY [detail]` once it serves, or `ERROR <reason>`.
enum DaemonLauncher {
    struct Launched {
        var pid: pid_t
        var log: String
        /// What followed READY on the daemon's ready line.
        var detail: String
    }

    private static let spawnLock = Lock()

    static func launch(_ arguments: [String], logPath: String, runDirectory: String) throws -> Launched {
        try FileSystem.mkdirs(runDirectory, mode: 0o700)
        var pipeFDs: [Int32] = [0, 0]
        // A plan launches several daemons from threads at once: no other launch may spawn while
        // this pipe is not yet close-on-exec, or a daemon would inherit it and hold it open.
        spawnLock.lock()
        var spawnLocked = true
        defer { if spawnLocked { spawnLock.unlock() } }
        guard pipe(&pipeFDs) == 0 else { throw SystemError.current("pipe", "ready pipe") }
        // Only the dup2'ed fd 3 may reach the daemon, or the parent would never see EOF.
        pipeFDs.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
        let args = ["replicafs"] + arguments + ["--ready-fd", "3"]

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(0x80)) // POSIX_SPAWN_SETSID: outlive the terminal

        var cargs = args.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, &cargs, environ)
        close(pipeFDs[1])
        spawnLock.unlock()
        spawnLocked = false
        guard rc == 0 else {
            close(pipeFDs[0])
            throw ReplicaError("cannot start the daemon: \(String(cString: strerror(rc)))")
        }
        var answer = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer.append(contentsOf: buf[0..<n])
            if answer.last == 0x0a { break }
        }
        close(pipeFDs[0])
        let text = String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "READY" || text.hasPrefix("READY ") {
            return Launched(pid: pid, log: logPath, detail: String(text.dropFirst(5)).trimmingCharacters(in: .whitespaces))
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        if text.hasPrefix("ERROR ") { throw ReplicaError(String(text.dropFirst(6))) }
        throw ReplicaError("the daemon exited before it was ready; see \(logPath)")
    }

    /// Answers the launcher on `fd` (the daemon side). The launcher may be gone (killed, or
    /// Ctrl-C): the write then fails with EPIPE (SIGPIPE is ignored in the daemon), which is
    /// noted in the daemon's log; a daemon that is ready serves on.
    static func answer(_ fd: Int32, _ line: String) {
        guard fd >= 0 else { return }
        let bytes = Array((line + "\n").utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let why = n < 0 ? String(cString: strerror(errno)) : "nothing written"
                let next = line.hasPrefix("READY") ? "the mount is ready and served; `replicafs status` shows it" : "it did not see: \(line)"
                FileHandle.standardError.write(Data("replicafs: the command that started this daemon is gone (\(why)): \(next)\n".utf8))
                break
            }
            done += n
        }
        close(fd)
    }
}
