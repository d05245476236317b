import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaSystem

/// `replicafs resume <vm>`: the administrator fixed what stopped replication. Clears the
/// Critical state a non-recoverable error left and the retry back-off; the next attempt runs
/// at once (and goes Critical again if the cause is still there).
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Resume replication of a VM after a Critical error was fixed (also retries a waiting VM now).")
    @Argument(help: "VM name.") var vm: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        let entry = try daemonProtecting(vm)
        let response = try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .resume, vm: vm))
        guard response.ok else { throw ReplicaError(response.error ?? "resume failed") }
        if output.json {
            struct Result: Encodable { var vm: String, mountpoint: String, resumed: Bool }
            return try printJSON(Result(vm: vm, mountpoint: entry.mountpoint, resumed: true))
        }
        print("resumed \(vm): replication retries now")
    }
}
