import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `Tools/delay-proxy.py` running in one namespace of a `NetworkNamespaces`: a TCP proxy that
/// forwards every chunk after `delayMs` each way (a propagation delay; the round trip grows by
/// twice it). Latency emulation where the kernel has no netem. `stop()` ends it with SIGTERM
/// (call it in a defer); the namespaces' `cleanup()` kills it too if a test forgets.
public final class DelayProxy: Sendable {
    /// The script, found beside the sources.
    public static let script: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Tools/delay-proxy.py").path
    }()

    /// The port it accepts on.
    public let port: Int
    private let pid: Int32

    /// Starts the proxy in `namespace` on `listenHost` (any free port, or `listenPort`) in
    /// front of `target` ("HOST:PORT"); returns once it listens.
    public init(_ net: NetworkNamespaces, in namespace: String, listenHost: String, listenPort: Int = 0,
                to target: String, delayMs: Double) throws {
        let pipe = Pipe()
        let process = try net.spawn(in: namespace, ["/usr/bin/python3", Self.script, "--listen", "\(listenHost):\(listenPort)",
                                                    "--to", target, "--delay-ms", String(delayMs)],
                                    output: pipe.fileHandleForWriting)
        try? pipe.fileHandleForWriting.close()
        // Its first line says where it listens ("... listening on HOST:PORT, ..."); EOF means it failed.
        var text = ""
        while !text.contains("\n") {
            let data = pipe.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        let line = text.split(separator: "\n").first.map(String.init) ?? ""
        guard line.hasPrefix("delay-proxy: listening on "),
              let address = line.split(separator: " ").dropFirst(3).first,
              let port = Int(address.split(separator: ":").last?.trimmingCharacters(in: .punctuationCharacters) ?? "") else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw NamespaceError("delay-proxy.py did not start: \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        self.port = port
        pid = process.processIdentifier
    }

    /// Ends the proxy (SIGTERM, then SIGKILL after 5 s) and waits for it.
    public func stop() {
        guard kill(pid, SIGTERM) == 0 else { return }
        for _ in 0..<100 {
            var status: Int32 = 0
            // The Process object reaps it too; whichever comes first, a gone pid ends the wait.
            if waitpid(pid, &status, WNOHANG) == pid || kill(pid, 0) != 0 { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
    }
}
