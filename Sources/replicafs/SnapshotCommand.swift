import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Cut a recovery point now and wait until the target has committed it.")
    @Argument(help: "VM name.") var vm: String
    @Flag(help: "Run the quiesce command first and mark the point app-consistent (thaw always runs).") var appConsistent = false
    @Flag(help: "Return once the point is committed (the default; kept for scripts).") var wait = false
    @Flag(help: "Print the point as JSON.") var json = false

    func run() throws {
        let entry = try daemonProtecting(vm)
        // A first snapshot runs the initial copy, a required resync runs first: their progress shows.
        let response = try DaemonProgress.showing(entry, vm: vm) {
            try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .snapshot, vm: vm, appConsistent: appConsistent))
        }
        guard response.ok, let point = response.point else { throw ReplicaError(response.error ?? "snapshot failed") }
        if json { return try printJSON(PointsCommand.Row(point)) }
        print("recovery point \(point.id) (\(point.consistency.rawValue)-consistent) committed for \(vm)")
    }
}
