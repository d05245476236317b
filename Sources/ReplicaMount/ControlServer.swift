import Foundation
import ReplicaCore
#if canImport(Glibc)
import Glibc
#endif

/// Answers `rotate` and `status` requests on the mount's control socket, one thread.
final class ControlServer: @unchecked Sendable {
    private let socket: UnixSocket
    private let server: FuseServer
    private let replicator: Replicator
    private var thread: Thread?

    init(path: String, server: FuseServer, replicator: Replicator) throws {
        socket = try UnixSocket.listen(at: path)
        self.server = server
        self.replicator = replicator
    }

    func start() {
        let t = Thread { [self] in
            while true {
                guard let client = try? socket.accept() else { return }
                // One thread per client: a long snapshot or resync must not hold up status.
                Thread { [self] in
                    handle(client)
                    client.close()
                }.start()
            }
        }
        t.name = "replicafs-control"
        t.start()
        thread = t
    }

    func stop() {
        _ = shutdown(socket.fd, Int32(SHUT_RDWR))
        socket.close()
        _ = unlink(socket.path)
    }

    private func handle(_ client: UnixSocket) {
        var response: ControlResponse
        do {
            let request = try JSONDecoder().decode(ControlRequest.self, from: try client.receiveLine())
            switch request.op {
            case .ping:
                response = ControlResponse(ok: true)
            case .rotate:
                response = ControlResponse(ok: true, rotation: try server.disks.rotate())
            case .status:
                var status = MountStatus(
                    pid: getpid(), mountpoint: server.mountpoint, disksDir: server.disks.directory,
                    writebackCache: server.options.writebackCache, images: server.disks.states)
                status.vms = replicator.vmStates
                response = ControlResponse(ok: true, status: status)
            case .snapshot:
                guard let vm = request.vm else { throw ReplicaError("snapshot needs a VM name") }
                response = ControlResponse(ok: true, point: try replicator.snapshot(vm, appConsistent: request.appConsistent ?? false))
            case .resync:
                guard let vm = request.vm else { throw ReplicaError("resync needs a VM name") }
                response = ControlResponse(ok: true, resync: try replicator.requestResync(vm, now: request.now ?? false))
            }
        } catch {
            response = ControlResponse(ok: false, error: "\(error)")
        }
        if let data = try? JSONEncoder().encode(response) { try? client.sendLine(data) }
    }
}
