import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

extension ReceiverClient {
    /// Runs `body`, retrying a dropped connection for `seconds` (an answer of the far side,
    /// even a recoverable error, is thrown at once). For idempotent requests.
    @discardableResult
    public func resuming<T>(for seconds: Double, _ body: () throws -> T) throws -> T {
        let deadline = Clock.nowNanos() + UInt64(seconds * 1e9)
        var pause: Double = 0.1
        while true {
            do {
                return try body()
            } catch where dropped(error) && Clock.nowNanos() < deadline {
                usleep(UInt32(pause * 1e6))
                pause = min(pause * 2, 2)
            }
        }
    }

    /// Runs a chunked transfer; after a dropped connection asks the far side for its durable
    /// offset (`resumeAt`) and runs `body` again from there (passed to it), for `seconds`.
    /// Shared by the receiver's uploads (`RemoteStore`) and the reverse logs sent to an
    /// original site (`RemoteOriginalSite`), so both resume the same way.
    public func transfer(what: String, for seconds: Double, resumeAt: @escaping () throws -> Int64, _ body: (Int64?) throws -> Void) throws {
        let deadline = Clock.nowNanos() + UInt64(seconds * 1e9)
        var restart: Int64? = nil
        var pause: Double = 0.1
        while true {
            do {
                try body(restart)
                return
            } catch where dropped(error) && Clock.nowNanos() < deadline {
                DaemonLog.logger.warning("\(location): \(what) interrupted (\(error)): resuming from the receiver's durable offset")
                usleep(UInt32(pause * 1e6))
                pause = min(pause * 2, 2)
                restart = try resuming(for: seconds, resumeAt)
            }
        }
    }
}
