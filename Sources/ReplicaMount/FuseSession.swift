import CFuse
import Synchronization
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// One libfuse low-level session on one mountpoint: create and mount it with an operation
/// table and its userdata, serve on libfuse's worker threads, unmount. Shared by the
/// protected mount (`FuseServer`) and the failover mount (`FailoverServer`).
// @unchecked: owns the libfuse session pointer, used from libfuse's threads and the signal thread.
final class FuseSession: @unchecked Sendable {
    let mountpoint: String
    let options: MountOptions
    private var session: OpaquePointer?
    /// Set once a clean unmount has been requested (unmount command or SIGTERM): written by
    /// the signal or control thread, read by the thread that runs the session loop.
    private let unmountFlag = Atomic<Bool>(false)
    var unmountRequested: Bool { unmountFlag.load(ordering: .acquiring) }
    /// Drops the cached pages of writes that failed (see `CacheInvalidator`).
    private var invalidator: CacheInvalidator?

    init(mountpoint: String, options: MountOptions) {
        self.mountpoint = mountpoint
        self.options = options
    }

    deinit { if let session { fuse_session_destroy(session) } }

    /// Creates the session and mounts it; after this returns the mount is live.
    func mount(operations: fuse_lowlevel_ops, userdata: UnsafeMutableRawPointer, fsname: String) throws {
        var o = ["fsname=\(fsname.replacingAll(",", with: "_"))", "subtype=replicafs", "default_permissions"]
        if options.allowOther { o.append("allow_other") }
        let argv = ["replicafs", "-o", o.joined(separator: ",")]
        var cargs = argv.map { strdup($0) }
        defer { cargs.forEach { free($0) } }
        var ops = operations
        let se = cargs.withUnsafeMutableBufferPointer { buf in
            rfs_session_new(Int32(buf.count), buf.baseAddress, &ops, userdata)
        }
        guard let se else { throw ReplicaError("cannot create a FUSE session (bad mount options?)") }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            fuse_session_destroy(se)
            throw ReplicaError("cannot mount \(mountpoint): the kernel refused the FUSE mount")
        }
        session = se
        invalidator = CacheInvalidator(session: se)
        // No child (a flush or unmount helper) may inherit /dev/fuse: a child blocked on the
        // mount would otherwise keep the connection alive after the daemon is killed.
        _ = fcntl(fuse_session_fd(se), F_SETFD, FD_CLOEXEC)
        tuneBackingDeviceInfo()
        // A daemon that backs a loop device must not be throttled by the reclaim it serves.
        _ = rfs_set_io_flusher()
    }

    /// Sets the mount's readahead and dirty-page share in /sys/class/bdi (root only; best effort:
    /// without it the mount works, only slower).
    private func tuneBackingDeviceInfo() {
        // The device comes from mountinfo: stat-ing our own mountpoint before the session
        // loop runs would wait for ourselves.
        guard geteuid() == 0, let device = MountTable.mount(at: mountpoint)?.device else { return }
        let bdi = "/sys/class/bdi/\(device)"
        try? FileSystem.writeFile(bdi + "/read_ahead_kb", "\(options.readaheadKiB)\n")
        try? FileSystem.writeFile(bdi + "/max_ratio", "\(options.dirtyRatio)\n")
    }

    /// Serves requests until the filesystem is unmounted (or the session fails, when it is
    /// unmounted here).
    func run() {
        guard let se = session else { return }
        let rc = rfs_session_loop_mt(se, 0, 10, options.maxThreads)
        if rc != 0 || !unmountRequested && MountTable.mount(at: mountpoint)?.fsType == "fuse.replicafs" {
            fuse_session_unmount(se)
        }
    }

    /// After a write the daemon refused: the kernel's cached copy of those bytes goes, so the
    /// mount shows what the disk holds. Call after replying to the failed request.
    func dropCachedPages(_ ino: fuse_ino_t, offset: Int64, length: Int) {
        invalidator?.invalidate(ino, offset: offset, length: Int64(length))
    }

    /// Asks the kernel to unmount (dirty pages are written back through us first). Returns
    /// an error text when the mount is busy; the daemon then keeps serving.
    func requestUnmount() -> String? {
        unmountFlag.store(true, ordering: .releasing)
        if let error = HelperProcess.unmount(mountpoint) {
            unmountFlag.store(false, ordering: .releasing)
            return error
        }
        return nil
    }
}

extension FuseSession {
    /// The entries both mounts answer alike: one flat directory whose set of files is fixed
    /// (no creating, removing or renaming through the mount), no extended attributes (ENOSYS
    /// once makes the kernel stop probing security.capability before every write).
    static func fixedDirectoryOperations(_ ops: inout fuse_lowlevel_ops) {
        ops.forget = { req, _, _ in fuse_reply_none(req) }
        ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
        ops.opendir = { req, ino, fi in
            guard ino == 1 else { fuse_reply_err(req, ENOTDIR); return }
            fuse_reply_open(req, fi)
        }
        ops.releasedir = { req, _, _ in fuse_reply_err(req, 0) }
        ops.getxattr = { req, _, _, _ in fuse_reply_err(req, ENOSYS) }
        ops.listxattr = { req, _, _ in fuse_reply_err(req, ENOSYS) }
        ops.setxattr = { req, _, _, _, _, _ in fuse_reply_err(req, ENOSYS) }
        ops.removexattr = { req, _, _ in fuse_reply_err(req, ENOSYS) }
        ops.create = { req, _, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.mknod = { req, _, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.mkdir = { req, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.unlink = { req, _, _ in fuse_reply_err(req, EPERM) }
        ops.rmdir = { req, _, _ in fuse_reply_err(req, EPERM) }
        ops.rename = { req, _, _, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.symlink = { req, _, _, _ in fuse_reply_err(req, EPERM) }
        ops.link = { req, _, _, _ in fuse_reply_err(req, EPERM) }
    }

    /// The errno a FUSE reply carries for `error`: a failed system call's own, else EIO.
    static func errno(of error: Error) -> Int32 { (error as? SystemError)?.errno ?? EIO }

    /// Answers a request that returns only a status: 0, or the errno of what `body` threw.
    static func replyStatus(_ req: fuse_req_t?, _ body: () throws -> Void) {
        do {
            try body()
            fuse_reply_err(req, 0)
        } catch {
            fuse_reply_err(req, errno(of: error))
        }
    }

    /// Answers STATFS with the statistics of the filesystem holding `fd`.
    static func replyStatfs(_ req: fuse_req_t?, of fd: FileDescriptor) {
        var st = statvfs()
        if fstatvfs(fd.rawValue, &st) != 0 { fuse_reply_err(req, Glibc.errno) } else { fuse_reply_statfs(req, &st) }
    }
    /// Answers READDIR with the entries from index `offset` on that fit in `size` bytes.
    static func replyDirectory(_ req: fuse_req_t?, _ entries: [(String, fuse_ino_t, mode_t)], size: Int, offset: off_t) {
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var used = 0
        var index = Int(offset)
        while index < entries.count {
            var st = stat()
            st.st_ino = __ino_t(entries[index].1)
            st.st_mode = entries[index].2
            let need = fuse_add_direntry(req, buffer + used, size - used, entries[index].0, &st, off_t(index + 1))
            if need > size - used { break }
            used += need
            index += 1
        }
        fuse_reply_buf(req, buffer, used)
    }
}

extension String {
    func replacingAll(_ a: Character, with b: String) -> String {
        split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
    }
}
