import ArgumentParser
import Foundation
import ReplicaMount
import ReplicaSystem
#if canImport(Glibc)
import Glibc
import ReplicaSource
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

    @Option(help: "Serve Prometheus metrics of the protected VMs on HOST:PORT (e.g. 127.0.0.1:9464), at /metrics.")
    var metrics: String?

    @OptionGroup var output: OutputOptions

    @Option(help: .hidden)
    var readyFd: Int32 = -1

    /// `mount --json`.
    struct Result: Encodable {
        var disksDir: String, mountpoint: String, pid: Int32, log: String
        /// The metrics URL, when served.
        var metrics: String?
    }

    func run() throws {
        var options = MountOptions()
        options.writebackCache = !noWritebackCache
        options.maxThreads = max(1, threads)
        options.allowOther = geteuid() == 0
        var daemon = MountDaemon(disksDir: disksDir, mountpoint: mountpoint, options: options)
        daemon.metricsAddress = metrics
        if foreground {
            try daemon.run { error in
                DaemonLauncher.answer(readyFd, error.map { "ERROR \(describe($0))" } ?? "READY")
            }
            return
        }
        try detach(daemon)
    }

    /// Starts the daemon as a new session and waits for it to say the mount is ready.
    private func detach(_ daemon: MountDaemon) throws {
        // Check here too, so that errors (and a stale-mount cleanup note) reach the caller's terminal.
        let mp = try daemon.preflight()
        var args = ["mount", disksDir, mountpoint, "--foreground", "--threads", String(threads)]
        if noWritebackCache { args.append("--no-writeback-cache") }
        if let metrics { args += ["--metrics", metrics] }
        let launched = try DaemonLauncher.launch(args, logPath: daemon.registry.paths(for: mp).log, runDirectory: daemon.registry.runDirectory)
        if output.json {
            try printJSON(Result(disksDir: try FileSystem.realPath(disksDir), mountpoint: mp, pid: launched.pid, log: launched.log,
                                      metrics: metrics.map { "http://\($0)/metrics" }))
        } else {
            print("mounted \(disksDir) on \(mp) (daemon pid \(launched.pid), log \(launched.log))\(metrics.map { ", metrics on http://\($0)/metrics" } ?? "")")
        }
        for skipped in (try? DiskEntries.scan(FileSystem.realPath(disksDir)).skipped) ?? [] {
            FileHandle.standardError.write(Data("replicafs: skipping \(skipped.name): \(skipped.reason) (\(DiskEntries.rule))\n".utf8))
        }
    }
}

func describe(_ error: Error) -> String {
    if let e = error as? ReplicaError { return e.description }
    if let e = error as? SystemError { return e.description }
    return "\(error)"
}
