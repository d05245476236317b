import ArgumentParser
import Dispatch
import Foundation
import ReplicaControl
import ReplicaNet
import ReplicaStore
import ReplicaSystem
import Synchronization

/// `replicafs serve`: the receiver of a secondary site. It serves one target store to the
/// senders of the site (certificates from the site CA, mutual TLS) and is that store's only
/// writer. Protocol and pairing: docs/secondary-site.md.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a target store to senders on other hosts over mutual TLS (the secondary site's receiver).",
        discussion: "Senders protect to replicafs://THIS-HOST:PORT. Returns once the receiver listens; it runs until SIGTERM.")

    @Option(help: "Target store directory to serve.") var store: String?
    @Option(help: "Serve this disks directory instead (at the original site, for reprotect and failback across hosts).") var disksDir: String?
    @Option(help: "Address and port to listen on (HOST:PORT, [IPv6]:PORT).") var listen = "0.0.0.0:\(ReplicaNet.defaultPort)"
    @Option(help: "PKI directory: the site CA, this host's certificate and key (default /etc/replicafs/pki).") var pki: String?
    @Option(help: "Key file (32 random bytes, mode 0600): keep the store encrypted at rest (AES-256-GCM); a new or empty --store becomes an encrypted store, an encrypted one needs its key. The key never leaves this host.")
    var encryptKeyFile: String?
    @Flag(help: "Stay in the foreground instead of detaching.") var foreground = false
    @Option(help: .hidden) var readyFd: Int32 = -1

    func validate() throws {
        guard (store == nil) != (disksDir == nil) else {
            throw ReplicaError("give --store (a secondary's receiver) or --disks-dir (an original site's disks), one of them", code: .badRequest)
        }
    }

    func run() throws {
        let address = try ReceiverAddress(hostPort: listen, defaultPort: nil, what: "--listen \(listen)")
        if let disksDir {
            guard encryptKeyFile == nil else { throw ReplicaError("--encrypt-key-file applies to --store, not --disks-dir", code: .badRequest) }
            return try serveDisks(disksDir, address)
        }
        let receiver = try openReceiver(store!)
        let root = receiver.store.location
        let identity = PKIDirectory(path: pki)
        // Checked here too, so that a missing or broken PKI reaches the caller's terminal.
        _ = try identity.serverTLSConfiguration()
        guard foreground else {
            var served = ["--store", root]
            if let encryptKeyFile { served += ["--encrypt-key-file", try FileSystem.realPath(encryptKeyFile)] }
            return try detach(served, served: root, address)
        }
        let server = try ReceiverServer(receiver: receiver, listen: address, pki: identity)
        let done = DispatchSemaphore(value: 0)
        let failure = Outcome()
        let readyFd = self.readyFd
        // The CLI's main thread waits here for the server's task; no event loop runs on it.
        Task {
            do {
                try await server.run(signals: true) { port in
                    DaemonLog.logger.info("receiver: serving \(root) on \(address.host):\(port)")
                    DaemonLauncher.answer(readyFd, "READY \(port)")
                }
            } catch {
                failure.message.withLock { $0 = "\(error)" }
                DaemonLauncher.answer(readyFd, "ERROR cannot serve on \(address.host):\(address.port): \(error)")
            }
            done.signal()
        }
        done.wait()
        if let message = failure.message.withLock({ $0 }) { throw ReplicaError("cannot serve on \(address.host):\(address.port): \(message)") }
    }

    /// Starts the server as a new session (`serve` with `served` and --foreground) and waits for it to listen.
    func detach(_ served: [String], served root: String, _ address: ReceiverAddress) throws {
        let runDirectory = MountRegistry().runDirectory
        var args = ["serve"] + served + ["--listen", listen, "--foreground"]
        if let pki { args += ["--pki", try FileSystem.realPath(pki)] }
        // The log is named by the port bound: with port 0 only the daemon knows it, so it starts
        // under a name of its own and is renamed once the port is known (the daemon's fd stays).
        let starting = runDirectory + "/serve-starting-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        let log = address.port == 0 ? starting : runDirectory + "/serve-\(address.port).log"
        let launched = try DaemonLauncher.launch(args, logPath: log, runDirectory: runDirectory)
        let port = launched.detail.isEmpty ? String(address.port) : launched.detail
        var logPath = launched.log
        if address.port == 0, Int(port) != nil {
            let named = runDirectory + "/serve-\(port).log"
            if (try? FileSystem.rename(log, to: named)) != nil { logPath = named }
        }
        print("serving \(root) on \(address.host):\(port) (daemon pid \(launched.pid), log \(logPath))")
    }
}

/// What the server's task ended with, for the waiting main thread.
private final class Outcome: Sendable {
    let message = Mutex<String?>(nil)
}
