import Foundation
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Unmounts FUSE mounts: umount2 as root, fusermount3 otherwise.
public enum Unmounter {
    /// Returns nil on success, or a one-line reason.
    public static func unmount(_ mountpoint: String, lazy: Bool = false) -> String? {
        if geteuid() == 0 {
            // A replication cycle may hold an image open for a moment: retry EBUSY briefly.
            var e: Int32 = 0
            for _ in 0..<20 {
                if umount2(mountpoint, lazy ? Int32(MNT_DETACH) : 0) == 0 { return nil }
                e = errno
                if e != EBUSY { break }
                usleep(100_000)
            }
            if e == EBUSY { return "\(mountpoint) is busy (files open, or a loop device attached): close them first" }
            return "cannot unmount \(mountpoint): \(String(cString: strerror(e)))"
        }
        let argv = ["/bin/fusermount3", "-u"] + (lazy ? ["-z"] : []) + [mountpoint]
        let result: CapturedCommand
        do { result = try CapturedCommand.run(argv, timeout: 30) } catch { return "cannot run fusermount3: \(error)" }
        if result.ok { return nil }
        let text = result.stderr
        return text.split(separator: "\n").first.map(String.init) ?? "fusermount3 failed for \(mountpoint)"
    }
}
