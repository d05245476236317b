#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the errno, what was attempted and on which path.
/// The core never sees raw return codes; every wrapper throws one of these.
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let errno: Int32
    public let operation: String
    public let path: String

    public init(errno: Int32, operation: String, path: String) {
        self.errno = errno
        self.operation = operation
        self.path = path
    }

    /// Captures the current `errno`.
    public static func current(_ operation: String, _ path: String) -> SystemError {
        SystemError(errno: Glibc.errno, operation: operation, path: path)
    }

    public var message: String { String(cString: strerror(errno)) }

    public var description: String { "\(operation) \(path): \(message)" }
}

/// Retries a system call while it fails with EINTR, and throws SystemError otherwise.
@inline(__always)
func syscallRetrying<T: BinaryInteger>(_ operation: String, _ path: String, _ body: () -> T) throws -> T {
    while true {
        let rc = body()
        if rc >= 0 { return rc }
        if Glibc.errno == EINTR { continue }
        throw SystemError.current(operation, path)
    }
}
