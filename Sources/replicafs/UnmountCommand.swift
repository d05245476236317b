import ArgumentParser
import Foundation
import ReplicaCore
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

    func run() throws {
        let mp = try MountDaemon.absolutePath(mountpoint)
        guard let mounted = MountTable.mount(at: mp) else { throw ReplicaError("\(mp) is not mounted") }
        guard mounted.fsType == "fuse.replicafs" else {
            throw ReplicaError("\(mp) is not a replicafs mount (it is \(mounted.fsType))")
        }
        let registry = MountRegistry()
        let entry = registry.lookup(mp)
        let alive = entry.map { MountRegistry.isAlive($0.pid) } ?? false
        if let problem = Unmounter.unmount(mp, lazy: !alive) { throw ReplicaError(problem) }
        guard let entry, alive else {
            registry.remove(mp)
            print("unmounted \(mp) (its daemon was already gone: the logs will be repaired at the next mount)")
            return
        }
        let deadline = Date().addingTimeInterval(timeout)
        while MountRegistry.isAlive(entry.pid) {
            if Date() > deadline { throw ReplicaError("daemon pid \(entry.pid) did not exit within \(Int(timeout)) s") }
            usleep(20_000)
        }
        print("unmounted \(mp)")
    }
}
