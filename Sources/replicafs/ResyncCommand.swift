import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// `replicafs resync <vm> [--now]`: make the replica equal to the source by block checksums.
struct ResyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resync",
        abstract: "Resynchronize a VM's replica with its source disks by block checksums.",
        discussion: "Without --now the VM is marked 'resync required' and the daemon runs it in the policy's resync window (--resync-window, 18:30-06:00 by default); ordinary cycles wait until then. With --now it runs at once and returns once the first consistent point after it is committed.")
    @Argument(help: "VM name.") var vm: String
    @Flag(help: "Run now instead of in the resync window, and wait for it.") var now = false
    @Flag(help: "Print the outcome as JSON.") var json = false

    func run() throws {
        let entry = try daemonProtecting(vm)
        let response = try DaemonProgress.showing(entry, vm: vm) {
            try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .resync, vm: vm, now: now))
        }
        guard response.ok, let outcome = response.resync else { throw ReplicaError(response.error ?? "resync failed") }
        if json { return try printJSON(outcome) }
        guard let report = outcome.report else {
            print("\(vm): resync required (\(outcome.reason ?? "requested")); it runs in the window \(outcome.window ?? "?") (or now with --now)")
            return
        }
        let point = outcome.point.map { "; recovery point \($0.id) committed" } ?? ""
        print(String(format: "resynchronized %@: sent %lld of %lld bytes (compared %lld) in %.2f s%@",
                     vm, report.bytesSent, report.diskBytes, report.bytesCompared, report.seconds, point))
    }
}
