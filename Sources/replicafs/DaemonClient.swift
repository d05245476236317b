import Foundation
import ReplicaCore
import ReplicaMount

// How the commands reach a running mount daemon: through the run registry and its control socket.

/// Finds the running daemon of a mountpoint.
func daemonEntry(_ mountpoint: String) throws -> MountRegistry.Entry {
    let mp = try MountDaemon.absolutePath(mountpoint)
    guard let entry = MountRegistry().lookup(mp), MountRegistry.isAlive(entry.pid) else {
        throw ReplicaError("\(mp) is not served by a running replicafs daemon")
    }
    return entry
}

func call(_ entry: MountRegistry.Entry, _ op: ControlRequest.Operation) throws -> ControlResponse {
    let response = try UnixSocket.call(entry.socket, ControlRequest(op: op))
    guard response.ok else { throw ReplicaError(response.error ?? "the daemon refused \(op.rawValue)") }
    return response
}

/// Finds the running daemon whose disks-dir protects `vm`.
func daemonProtecting(_ vm: String) throws -> MountRegistry.Entry {
    for entry in MountRegistry().all() where MountRegistry.isAlive(entry.pid) {
        if ProtectedVM.all(disksDir: entry.disksDir).contains(where: { $0.name == vm }) { return entry }
    }
    throw ReplicaError("unknown VM \(vm): no running mount protects it")
}
