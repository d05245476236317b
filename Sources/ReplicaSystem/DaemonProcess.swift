#if canImport(Glibc)
import Glibc
#endif

/// What /proc says about a daemon's process, so commands can tell a daemon that is gone or
/// stopped from one that is merely busy, without asking the daemon itself.
public struct DaemonProcess: Sendable {
    public enum State: String, Sendable {
        /// Running or sleeping: it may answer.
        case running
        /// Stopped (SIGSTOP, a debugger): it cannot answer until continued.
        case stopped
        /// No such process, or a zombie: it will never answer.
        case gone
    }

    public let pid: Int32

    public init(pid: Int32) { self.pid = pid }

    /// The state letter of /proc/<pid>/stat, mapped: T and t are stopped, Z, X and a missing
    /// process are gone, anything else (R, S, D, ...) is running.
    public var state: State {
        guard pid > 0, let stat = try? FileSystem.readFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return .gone }
        switch stat[close + 2] {
        case UInt8(ascii: "T"), UInt8(ascii: "t"): return .stopped
        case UInt8(ascii: "Z"), UInt8(ascii: "X"):
            // A killed process whose main thread exited while another thread is blocked in
            // the kernel (on its own FUSE mount) shows Z: it is dying, not gone, and still
            // holds its descriptors and locks.
            let tasks = (try? FileSystem.list("/proc/\(pid)/task")) ?? []
            return tasks.count > 1 ? .running : .gone
        default: return .running
        }
    }

    /// True when the process runs the replicafs binary: a pid from the registry may have been
    /// reused by an unrelated process after the daemon died, which must never be signalled.
    public var isReplicaFS: Bool {
        guard let cmdline = try? FileSystem.readFile("/proc/\(pid)/cmdline") else { return false }
        let argv0 = cmdline.split(separator: 0, omittingEmptySubsequences: false).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        return argv0 == "replicafs" || argv0.hasSuffix("/replicafs")
    }

    /// Sends SIGKILL (continuing a stopped process is not needed: SIGKILL ends it too) and
    /// waits up to `timeout` seconds for it to be gone. Returns whether it is gone.
    public func killAndWait(timeout: Double) -> Bool {
        guard state != .gone else { return true }
        _ = kill(pid, SIGKILL)
        let deadline = Self.monotonicSeconds() + timeout
        while state != .gone {
            if Self.monotonicSeconds() > deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// Seconds on the monotonic clock, for deadlines that a wall-clock step must not stretch.
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
