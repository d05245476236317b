import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Runs the calls on the daemon's own mount that wait for the daemon to answer (an fsync that
/// pushes the kernel's cached writes through it, an unmount that writes them back) in a child
/// process. A daemon thread blocked in such a call would keep /dev/fuse open after a kill -9,
/// so the kernel would never abort the connection and every access to the mount would hang
/// for good. A child blocked there holds no /dev/fuse descriptor: when the daemon dies, the
/// kernel aborts the connection and the child's call fails.
public enum HelperProcess {
    /// Runs `argv` (argv[0] an absolute path); returns the exit status and the first line of
    /// its standard error.
    static func run(_ argv: [String]) throws -> (status: Int32, message: String) {
        let result = try CapturedCommand.run(argv, timeout: nil)
        return (result.status, result.stderr.split(separator: "\n").first.map(String.init) ?? "")
    }

    /// Pushes the kernel's cached writes of these images through the mount, where they are
    /// logged, and makes them durable: `sync FILE...` (an fsync of each) in a child process.
    public static func flush(_ images: [String], in mountpoint: String) throws {
        guard !images.isEmpty else { return }
        let result = try run(["/usr/bin/sync", "--"] + images.map { mountpoint + "/" + $0 })
        guard result.status == 0 else {
            throw ReplicaError("flushing the kernel's cache of \(images.joined(separator: ", ")) through \(mountpoint) failed: \(result.message.isEmpty ? "sync exited with \(result.status)" : result.message)")
        }
    }

    /// Unmounts the daemon's own mount from a child process (the kernel writes the cached
    /// pages back through the daemon first). Returns nil, or a one-line reason; a busy mount
    /// is retried for two seconds.
    public static func unmount(_ mountpoint: String) -> String? {
        guard geteuid() == 0 else { return Unmounter.unmount(mountpoint) } // fusermount3: a child already
        var last = ""
        for _ in 0..<20 {
            do {
                let result = try run(["/usr/bin/umount", "-i", mountpoint])
                if result.status == 0 { return nil }
                last = result.message
            } catch {
                return "\(error)"
            }
            guard last.contains("busy") else { break }
            usleep(100_000)
        }
        if last.contains("busy") { return "\(mountpoint) is busy (files open, or a loop device attached): close them first" }
        return "cannot unmount \(mountpoint): \(last)"
    }
}
