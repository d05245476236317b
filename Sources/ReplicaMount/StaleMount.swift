import Foundation
import ReplicaControl
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A replicafs mount whose daemon is gone, stopped or stuck: every access to it fails or
/// hangs. `recover` aborts its FUSE connection through fusectl (so nothing waits on it any
/// longer, the stuck daemon included), ends the old daemon, and detaches the mount, so
/// `mount` can mount again.
enum StaleMount {
    static let fusectl = "/sys/fs/fuse/connections"

    /// Why the replicafs mount at `mountpoint` has no daemon that serves it, or nil when its
    /// daemon answers a ping within `timeout` seconds.
    static func problem(_ mountpoint: String, registry: MountRegistry, timeout: Double = 5) -> String? {
        guard let entry = registry.lookup(mountpoint) else { return "no daemon is recorded for it" }
        let process = DaemonProcess(pid: entry.pid)
        switch process.state {
        case .gone: return "its daemon (pid \(entry.pid)) is gone"
        case .stopped: return "its daemon (pid \(entry.pid)) is stopped"
        case .running:
            do {
                let pong = try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .ping), timeout: timeout)
                return pong.ok ? nil : "its daemon (pid \(entry.pid)) refused a ping: \(pong.error ?? "?")"
            } catch {
                return "its daemon (pid \(entry.pid)) does not answer (\(error))"
            }
        }
    }

    /// Aborts the mount's FUSE connection, kills its old daemon (when it is still a replicafs
    /// process), detaches the mount and forgets it. Returns what was done, for the operator.
    static func recover(_ mount: MountTable.Mount, registry: MountRegistry, problem: String) throws -> String {
        let mp = mount.mountpoint
        var done: [String] = []
        // A dead daemon's connection is gone already (no such fusectl entry); a stopped one's
        // also goes when it is killed below; a stuck one's must be aborted to let it exit.
        var abortError: Error?
        do {
            try abortConnection(device: mount.device)
            done.append("aborted its FUSE connection")
        } catch {
            abortError = error
        }
        if let entry = registry.lookup(mp) {
            let process = DaemonProcess(pid: entry.pid)
            if process.state != .gone && process.isReplicaFS {
                guard process.killAndWait(timeout: 15) else {
                    let why = abortError.map { " (its FUSE connection could not be aborted: \($0))" } ?? ""
                    throw ReplicaError("the old daemon of \(mp) (pid \(entry.pid)) does not exit after SIGKILL\(why)")
                }
                done.append("killed its daemon (pid \(entry.pid))")
            }
        }
        if let error = Unmounter.unmount(mp, lazy: true) {
            throw ReplicaError("mountpoint \(mp) holds a stale replicafs mount that cannot be cleaned up: \(error)")
        }
        registry.remove(mp)
        done.append("cleaned up the stale mount")
        return "replicafs: \(mp): \(problem): \(done.joined(separator: ", ")); mounting again"
    }

    /// Writes 1 to /sys/fs/fuse/connections/<dev>/abort (mounting fusectl there first if
    /// needed): every request of the connection fails at once and no new one is sent.
    static func abortConnection(device: String) throws {
        let parts = device.split(separator: ":")
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else {
            throw ReplicaError("bad device number \(device) in /proc/self/mountinfo")
        }
        if MountTable.mount(at: fusectl)?.fsType != "fusectl" {
            guard Glibc.mount("fusectl", fusectl, "fusectl", 0, nil) == 0 else { throw SystemError.current("mount fusectl", fusectl) }
        }
        // The kernel names a connection by its dev_t: (major << 20) | minor.
        let path = "\(fusectl)/\((major << 20) | minor)/abort"
        // A sysfs attribute takes write(2), not pwrite (ESPIPE).
        let fd = try FileDescriptor.open(path, O_WRONLY)
        defer { fd.close() }
        let n = "1\n".withCString { Glibc.write(fd.rawValue, $0, 2) }
        guard n == 2 else { throw SystemError.current("write", path) }
    }
}
