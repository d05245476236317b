import Dispatch
import ReplicaControl
import ReplicaNet
import ReplicaStore
import ReplicaSystem
import Synchronization

extension ServeCommand {
    /// `serve --disks-dir DIR`: the original site's disks directory for reprotect and failback
    /// run at the secondary (`--disks-dir replicafs://THIS-HOST:PORT` there), mutual TLS.
    func serveDisks(_ dir: String, _ address: ReceiverAddress) throws {
        let disks = try SiteDisks(directory: dir)
        // This host's own mount must not write the disks while the other site does.
        if let running = MountRegistry().all().first(where: { MountRegistry.isAlive($0.pid) && $0.disksDir == disks.directory }) {
            throw ReplicaError("\(disks.directory) is served by the replicafs mount on \(running.mountpoint): `replicafs unmount \(running.mountpoint)` first", code: .badRequest)
        }
        let identity = PKIDirectory(path: pki)
        _ = try identity.serverTLSConfiguration()
        guard foreground else { return try detach(["--disks-dir", disks.directory], served: disks.directory, address) }
        let server = try SiteServer(disks: disks, listen: address, pki: identity)
        let done = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        let readyFd = self.readyFd
        // The CLI's main thread waits here for the server's task; no event loop runs on it.
        Task {
            do {
                try await server.run(signals: true) { port in
                    DaemonLog.logger.info("site: serving disks \(disks.directory) on \(address.host):\(port)")
                    DaemonLauncher.answer(readyFd, "READY \(port)")
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
                DaemonLauncher.answer(readyFd, "ERROR cannot serve on \(address.host):\(address.port): \(error)")
            }
            done.signal()
        }
        done.wait()
        if let message = failure.withLock({ $0 }) { throw ReplicaError("cannot serve on \(address.host):\(address.port): \(message)") }
    }
}
