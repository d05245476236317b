import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
#if canImport(Glibc)
import Glibc
#endif

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount cleanly: pending writes are flushed, logs sealed with a clean-shutdown record.")

    @Argument(help: "The mountpoint.")
    var mountpoint: String

    @Option(help: "Seconds to wait for the daemon to seal its logs.")
    var timeout: Double = 120

    @OptionGroup var output: OutputOptions

    func run() throws {
        let mp = try MountDaemon.absolutePath(mountpoint)
        let wasAlive = MountRegistry().lookup(mp).map { MountRegistry.isAlive($0.pid) } ?? false
        try stopMount(mp, timeout: timeout)
        if output.json {
            struct Result: Encodable { var mountpoint: String, daemonWasRunning: Bool }
            return try printJSON(Result(mountpoint: mp, daemonWasRunning: wasAlive))
        }
        print(wasAlive ? "unmounted \(mp)" : "unmounted \(mp) (its daemon was already gone: the logs will be repaired at the next mount)")
    }
}
