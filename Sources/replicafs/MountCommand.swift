import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Expose the disk images of a directory through FUSE, logging every write.",
        discussion: "Returns once the mount is ready; the daemon runs on until `replicafs unmount` or SIGTERM.")

    @Argument(help: "Directory holding the disk images (and their .hrl change logs).")
    var disksDir: String

    @Argument(help: "Empty directory to mount on.")
    var mountpoint: String

    @Flag(help: "Stay in the foreground instead of detaching.")
    var foreground = false

    @Flag(help: "Disable the kernel writeback cache: every write reaches the daemon as made (slower for small writes).")
    var noWritebackCache = false

    @Option(help: "Maximum FUSE worker threads.")
    var threads: UInt32 = 10

    @Option(help: .hidden)
    var readyFd: Int32 = -1

    func run() throws {
        var options = MountOptions()
        options.writebackCache = !noWritebackCache
        options.maxThreads = max(1, threads)
        options.allowOther = geteuid() == 0
        let daemon = MountDaemon(disksDir: disksDir, mountpoint: mountpoint, options: options)
        if foreground {
            try daemon.run { error in
                guard readyFd >= 0 else { return }
                let line = error.map { "ERROR \(describe($0))\n" } ?? "READY\n"
                _ = line.withCString { write(readyFd, $0, strlen($0)) }
                close(readyFd)
            }
            return
        }
        try detach(daemon)
    }

    /// Starts the daemon as a new session and waits for it to say the mount is ready.
    private func detach(_ daemon: MountDaemon) throws {
        // Check here too, so that errors (and a stale-mount cleanup note) reach the caller's terminal.
        let mp = try daemon.preflight()
        let logPath = daemon.registry.paths(for: mp).log
        try FileSystem.mkdirs(daemon.registry.runDirectory, mode: 0o700)
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw SystemError.current("pipe", "ready pipe") }
        // Only the dup2'ed fd 3 may reach the daemon, or the parent would never see EOF.
        pipeFDs.forEach { _ = fcntl($0, F_SETFD, FD_CLOEXEC) }
        var args = ["replicafs", "mount", disksDir, mountpoint, "--foreground", "--ready-fd", "3",
                    "--threads", String(threads)]
        if noWritebackCache { args.append("--no-writeback-cache") }

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
        guard rc == 0 else {
            close(pipeFDs[0])
            throw ReplicaError("cannot start the mount daemon: \(String(cString: strerror(rc)))")
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
        if text == "READY" {
            print("mounted \(disksDir) on \(mp) (daemon pid \(pid), log \(logPath))")
            return
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        if text.hasPrefix("ERROR ") { throw ReplicaError(String(text.dropFirst(6))) }
        throw ReplicaError("the mount daemon exited before the mount was ready; see \(logPath)")
    }
}

func describe(_ error: Error) -> String {
    if let e = error as? ReplicaError { return e.description }
    if let e = error as? SystemError { return e.description }
    return "\(error)"
}
