import Foundation
import ReplicaStore
import ReplicaSystem

extension FailoverCoordinator {
    /// Refuses a failback while a failed-over disk is in use: open in a process (the VM) or
    /// attached to a loop device (a filesystem mounted from it). Freezing writes under either
    /// would make its writes fail and leave a filesystem half written; nothing is frozen or
    /// copied yet when this throws, and the message names what to stop and the command to run.
    /// Only a user seen in every one of three looks over half a second counts: a process that
    /// opens a disk for a moment (one write) is what the freeze's refused-write count is for.
    func requireDisksUnused(_ state: FailoverState, again: String) throws {
        let paths = state.disks.map { state.mountpoint + "/" + $0 }
        var users = FileUsers.users(of: paths)
        for _ in 0..<2 where !users.isEmpty {
            usleep(250_000)
            let now = FileUsers.users(of: paths)
            users = users.filter { u in now.contains { $0.path == u.path && $0.pid == u.pid && $0.name == u.name } }
        }
        guard !users.isEmpty else { return }
        let what = users.map(\.description).joined(separator: "; ")
        let release = users.map(\.release).joined(separator: "; ")
        throw ReplicaError("failback of VM \(state.vm) refused before stopping its writes: \(what). Shut the VM down (\(release)), then run \(again)", code: .stepFailed)
    }
}
