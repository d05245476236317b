import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Calls a daemon's control socket with time limits, so no command hangs on a daemon that is
/// stopped, stuck or gone. Connecting and sending get `connectTimeout`; quick requests
/// (ping, status, unfreeze) must be answered within `quickTimeout`; the others (a snapshot,
/// a resync, a freeze may take minutes) wait as long as the daemon's process is running, and
/// fail as soon as it is stopped or gone.
public enum ControlClient {
    public static let connectTimeout: Double = 3
    public static let quickTimeout: Double = 5

    /// Whether `op` answers at once (no replication, copy or sync behind it).
    public static func isQuick(_ op: ControlRequest.Operation) -> Bool {
        switch op {
        case .ping, .status, .unfreeze: return true
        default: return false
        }
    }

    /// One request, one response, from the daemon with process `pid` listening on `socket`.
    public static func call(socket path: String, pid: Int32, _ request: ControlRequest, timeout: Double? = nil) throws -> ControlResponse {
        let limit = timeout ?? (isQuick(request.op) ? quickTimeout : nil)
        let daemon = DaemonProcess(pid: pid)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.current("socket", path) }
        defer { Glibc.close(fd) }
        // A stopped daemon's listen backlog fills up, and then connect blocks: bound it too.
        try setTimeout(fd, SO_SNDTIMEO, min(connectTimeout, limit ?? connectTimeout), path)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw ReplicaError("control socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS { throw notAnswering(daemon, path, connectTimeout) }
            throw SystemError.current("connect", path)
        }
        let sock = UnixSocket(fd: fd, path: path)
        do {
            try sock.sendLine(try JSONEncoder().encode(request))
        } catch let e as SystemError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
            throw notAnswering(daemon, path, connectTimeout)
        }
        // Wait in one-second slices, looking at the daemon's process between them.
        try setTimeout(fd, SO_RCVTIMEO, min(1, limit ?? 1), path)
        let started = DaemonProcess.monotonicSeconds()
        var line = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                line.append(contentsOf: buf[0..<n])
                if line.last == 0x0a { line.removeLast(); break }
                continue
            }
            if n == 0 { break }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw SystemError.current("recv", path) }
            let waited = DaemonProcess.monotonicSeconds() - started
            if let limit, waited >= limit { throw notAnswering(daemon, path, limit) }
            switch daemon.state {
            case .gone: throw ReplicaError("the daemon (pid \(pid)) died before answering \(request.op.rawValue) on \(path)")
            case .stopped: throw ReplicaError("the daemon (pid \(pid)) is stopped (SIGSTOP?) and cannot answer \(request.op.rawValue) on \(path)")
            case .running: continue
            }
        }
        guard !line.isEmpty else { throw ReplicaError("the daemon closed its control socket \(path) without answering") }
        return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
    }

    static func notAnswering(_ daemon: DaemonProcess, _ path: String, _ seconds: Double) -> ReplicaError {
        let why = daemon.state == .stopped ? "it is stopped" : daemon.state == .gone ? "it is gone" : "stuck?"
        return ReplicaError("the daemon (pid \(daemon.pid)) did not answer on \(path) within \(String(format: "%g", seconds)) s (\(why))")
    }

    static func setTimeout(_ fd: Int32, _ option: Int32, _ seconds: Double, _ path: String) throws {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        if setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size)) != 0 {
            throw SystemError.current("setsockopt", path)
        }
    }
}
