import ArgumentParser
import Foundation
import ReplicaLog
import ReplicaMount
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

struct RotateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Seal the current log of every image at one cut and start the next ones.",
        discussion: "Writes the kernel still caches are flushed through the mount first, so the cut holds every write made before the command started.")

    @Argument(help: "The mountpoint.")
    var mountpoint: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let entry = try daemonEntry(mountpoint)
        guard let status = try call(entry, .status).status else { throw ReplicaError("the daemon sent no status") }
        try FileSystem.fsync(status.images.map(\.name), in: entry.mountpoint)
        guard let rotation = try call(entry, .rotate).rotation else { throw ReplicaError("the daemon sent no rotation result") }
        if json {
            try printJSON(rotation)
        } else {
            print("cut \(rotation.cutID): sealed \(rotation.sealed.count) log(s)")
            rotation.sealed.forEach { print("  \($0)") }
        }
    }
}
