import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A Unix stream socket for the daemon's control channel: newline-delimited JSON.
public struct UnixSocket: Sendable {
    public let fd: Int32
    public let path: String

    /// Wraps a connected socket `fd`, named by its `path` in errors.
    public init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    private static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw ReplicaError("control socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return addr
    }

    /// Binds and listens at `path`, replacing a stale socket file.
    public static func listen(at path: String) throws -> UnixSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.current("socket", path) }
        _ = unlink(path)
        var addr = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 16) == 0 else {
            let e = SystemError.current("bind", path)
            Glibc.close(fd)
            throw e
        }
        _ = chmod(path, 0o600)
        return UnixSocket(fd: fd, path: path)
    }

    public static func connect(to path: String) throws -> UnixSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError.current("socket", path) }
        var addr = try address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = SystemError.current("connect", path)
            Glibc.close(fd)
            throw e
        }
        return UnixSocket(fd: fd, path: path)
    }

    public func accept() throws -> UnixSocket {
        while true {
            let c = Glibc.accept(fd, nil, nil)
            if c >= 0 {
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                return UnixSocket(fd: c, path: path)
            }
            if errno == EINTR { continue }
            throw SystemError.current("accept", path)
        }
    }

    public func close() { _ = Glibc.close(fd) }

    public func sendLine(_ data: Data) throws {
        var bytes = [UInt8](data)
        bytes.append(0x0a)
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.current("send", path)
            }
            done += n
        }
    }

    /// Reads up to a newline (or end of stream).
    public func receiveLine(limit: Int = 16 << 20) throws -> Data {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemError.current("recv", path)
            }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.last == 0x0a { out.removeLast(); break }
        }
        return Data(out)
    }
}
