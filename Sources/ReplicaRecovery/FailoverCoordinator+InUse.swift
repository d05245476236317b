import ReplicaStore
import ReplicaSystem

extension FailoverCoordinator {
    /// Refuses a failback while a failed-over disk is in use: open in a process (the VM) or
    /// attached to a loop device (a filesystem mounted from it). Freezing writes under either
    /// would make its writes fail and leave a filesystem half written; nothing is frozen or
    /// copied yet when this throws, and the message names what to stop and the command to run.
    func requireDisksUnused(_ state: FailoverState, again: String) throws {
        let paths = state.disks.map { state.mountpoint + "/" + $0 }
        let users = FileUsers.users(of: paths)
        guard !users.isEmpty else { return }
        let what = users.map(\.description).joined(separator: "; ")
        let release = users.map(\.release).joined(separator: "; ")
        throw ReplicaError("failback of VM \(state.vm) refused before stopping its writes: \(what). Shut the VM down (\(release)), then run \(again)", code: .stepFailed)
    }
}
