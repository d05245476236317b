import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaStore
import ReplicaSystem

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
    let response = try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: op))
    guard response.ok else { throw ReplicaError(response.error ?? "the daemon refused \(op.rawValue)") }
    return response
}

/// Finds the running daemon whose disks-dir protects `vm`.
func daemonProtecting(_ vm: String) throws -> MountRegistry.Entry {
    for entry in MountRegistry().all() where MountRegistry.isAlive(entry.pid) {
        if ProtectedVM.all(disksDir: entry.disksDir).contains(where: { $0.name == vm }) { return entry }
    }
    guard let entry = VMRegistry().lookup(vm) else {
        throw ReplicaError("unknown VM \(vm): not registered on this host and no running mount protects it; `replicafs protect \(vm) --disks-dir <dir> --disk <img> --target <store>` (`replicafs vms` lists the VMs known here)", code: .unknownVM)
    }
    if let failover = entry.failover {
        throw ReplicaError("VM \(vm) is failed over here (\(failover.kind) failover on \(failover.mountpoint)): no protected mount replicates it; `replicafs status \(vm)` says what to run next")
    }
    guard let dir = entry.disksDir else { throw ReplicaError("VM \(vm) is known here only from its store \(entry.target): no mount protects it on this host") }
    throw ReplicaError("VM \(vm) is protected in \(dir) but no running mount serves it: `replicafs mount \(dir) <mountpoint>`", code: .mountNotRunning)
}

/// Unmounts a replicafs mount (protected or failover) cleanly and waits for its daemon to
/// exit, which is when its logs or copy-on-write layers are durable.
func stopMount(_ mountpoint: String, timeout: Double = 120) throws {
    let mp = try MountDaemon.absolutePath(mountpoint)
    guard let mounted = MountTable.mount(at: mp) else {
        // A daemon that died after its mount went leaves its record: forget it.
        let registry = MountRegistry()
        if let entry = registry.lookup(mp), DaemonProcess(pid: entry.pid).state == .gone {
            registry.remove(mp)
            throw ReplicaError("\(mp) is not mounted (the record of its dead daemon, pid \(entry.pid), is removed)")
        }
        throw ReplicaError("\(mp) is not mounted")
    }
    guard mounted.fsType == "fuse.replicafs" else {
        throw ReplicaError("\(mp) is not a replicafs mount (it is \(mounted.fsType))")
    }
    let registry = MountRegistry()
    let entry = registry.lookup(mp)
    let alive = entry.map { MountRegistry.isAlive($0.pid) } ?? false
    if let problem = Unmounter.unmount(mp, lazy: !alive) { throw ReplicaError(problem) }
    guard let entry, alive else {
        registry.remove(mp)
        return
    }
    let deadline = Date().addingTimeInterval(timeout)
    while MountRegistry.isAlive(entry.pid) {
        if Date() > deadline { throw ReplicaError("daemon pid \(entry.pid) did not exit within \(Int(timeout)) s") }
        usleep(20_000)
    }
}
