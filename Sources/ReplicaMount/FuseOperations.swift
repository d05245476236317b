import CFuse
import CLinux
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The libfuse low-level operation table. Each entry is a C function pointer that finds its
/// `FuseServer` through the request's userdata and answers synchronously.
extension FuseServer {
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()

        ops.`init` = { userdata, conn in
            guard let conn, let userdata else { return }
            let server = Unmanaged<FuseServer>.fromOpaque(userdata).takeUnretainedValue()
            // Size changes must come as SETATTR so they are logged, not as O_TRUNC on open.
            conn.pointee.want &= ~UInt32(FUSE_CAP_ATOMIC_O_TRUNC)
            if server.options.writebackCache && conn.pointee.capable & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_WRITEBACK_CACHE)
            }
            if conn.pointee.capable & UInt32(FUSE_CAP_SPLICE_WRITE) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE)
            }
            conn.pointee.max_write = 1 << 20
            conn.pointee.max_readahead = UInt32(server.options.readaheadKiB) << 10
            // Let the kernel keep more writeback and readahead requests in flight.
            conn.pointee.max_background = 64
            conn.pointee.congestion_threshold = 48
        }

        ops.lookup = { req, parent, name in
            let server = FuseServer.from(req)
            guard parent == FuseServer.rootInode, let name, let ino = server.lookupInode(String(cString: name)) else {
                fuse_reply_err(req, ENOENT)
                return
            }
            do {
                var e = fuse_entry_param()
                e.ino = ino
                e.attr = try server.attributes(ino)
                let stable = ino < (1 << 32)
                e.attr_timeout = stable ? FuseServer.stableTimeout : 0
                e.entry_timeout = stable ? FuseServer.stableTimeout : 0
                fuse_reply_entry(req, &e)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.getattr = { req, ino, _ in
            let server = FuseServer.from(req)
            do {
                var st = try server.attributes(ino)
                fuse_reply_attr(req, &st, ino < (1 << 32) ? FuseServer.stableTimeout : 0)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.setattr = { req, ino, attr, toSet, _ in
            let server = FuseServer.from(req)
            guard case .image(let journal)? = server.node(ino), let attr else {
                fuse_reply_err(req, ino == FuseServer.rootInode ? EPERM : EACCES)
                return
            }
            do {
                let fd = journal.image
                if toSet & FUSE_SET_ATTR_SIZE != 0 {
                    try journal.setSize(Int64(attr.pointee.st_size))
                }
                if toSet & FUSE_SET_ATTR_MODE != 0, fchmod(fd.rawValue, attr.pointee.st_mode & 0o7777) != 0 {
                    throw SystemError.current("chmod", fd.path)
                }
                if toSet & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) != 0 {
                    let uid = toSet & FUSE_SET_ATTR_UID != 0 ? attr.pointee.st_uid : uid_t.max
                    let gid = toSet & FUSE_SET_ATTR_GID != 0 ? attr.pointee.st_gid : gid_t.max
                    if fchown(fd.rawValue, uid, gid) != 0 { throw SystemError.current("chown", fd.path) }
                }
                if toSet & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW) != 0 {
                    var times = (timespec(tv_sec: 0, tv_nsec: RFS_UTIME_OMIT), timespec(tv_sec: 0, tv_nsec: RFS_UTIME_OMIT))
                    if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { times.0.tv_nsec = RFS_UTIME_NOW }
                    else if toSet & FUSE_SET_ATTR_ATIME != 0 { times.0 = attr.pointee.st_atim }
                    if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { times.1.tv_nsec = RFS_UTIME_NOW }
                    else if toSet & FUSE_SET_ATTR_MTIME != 0 { times.1 = attr.pointee.st_mtim }
                    let rc = withUnsafePointer(to: &times) {
                        $0.withMemoryRebound(to: timespec.self, capacity: 2) { futimens(fd.rawValue, $0) }
                    }
                    if rc != 0 { throw SystemError.current("utimens", fd.path) }
                }
                if toSet & ~FUSE_SET_ATTR_SIZE != 0 { journal.noteAttributeChange() }
                var st = try server.attributes(ino)
                fuse_reply_attr(req, &st, FuseServer.stableTimeout)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.open = { req, ino, fi in
            let server = FuseServer.from(req)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            switch server.node(ino) {
            case .image?:
                if fi.pointee.flags & RFS_O_DIRECT != 0 {
                    fi.pointee.direct_io = 1 // O_DIRECT (QEMU cache=none): bypass the page cache
                } else {
                    fi.pointee.keep_cache = 1 // only this mount changes the image
                }
                fi.pointee.fh = 0
                fuse_reply_open(req, fi)
            case .log(let name)?:
                guard fi.pointee.flags & O_ACCMODE == O_RDONLY else {
                    fuse_reply_err(req, EACCES) // change logs are read-only
                    return
                }
                do {
                    let fd = try FileDescriptor.open(at: server.directoryFD, name, O_RDONLY)
                    fi.pointee.fh = UInt64(fd.rawValue)
                    fi.pointee.direct_io = 1 // a growing file: always read fresh
                    // If the open was interrupted, no RELEASE will come: close it here.
                    if fuse_reply_open(req, fi) != 0 { fd.close() }
                } catch {
                    fuse_reply_err(req, FuseSession.errno(of: error))
                }
            case .root?:
                fuse_reply_err(req, EISDIR)
            case nil:
                fuse_reply_err(req, ENOENT)
            }
        }

        ops.read = { req, ino, size, off, fi in
            let server = FuseServer.from(req)
            switch server.node(ino) {
            case .image(let journal)?:
                rfs_reply_fd(req, journal.image.rawValue, off, size)
            case .log?:
                rfs_reply_fd(req, Int32(truncatingIfNeeded: fi?.pointee.fh ?? 0), off, size)
            default:
                fuse_reply_err(req, EISDIR)
            }
        }

        ops.write = { req, ino, buf, size, off, _ in
            let server = FuseServer.from(req)
            guard case .image(let journal)? = server.node(ino), let buf else {
                fuse_reply_err(req, EACCES)
                return
            }
            do {
                // Replied once the bytes are logged and on the image; the bookkeeping after follows.
                try journal.write(UnsafeRawBufferPointer(start: buf, count: size), offset: Int64(off)) {
                    fuse_reply_write(req, size)
                }
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
                // Written back from the cache, the failed bytes would stay readable there.
                server.session.dropCachedPages(ino, offset: Int64(off), length: size)
            }
        }

        ops.release = { req, ino, fi in
            let server = FuseServer.from(req)
            if case .log? = server.node(ino), let fi { _ = close(Int32(truncatingIfNeeded: fi.pointee.fh)) }
            fuse_reply_err(req, 0)
        }

        ops.fsync = { req, ino, datasync, _ in
            let server = FuseServer.from(req)
            guard case .image(let journal)? = server.node(ino) else { fuse_reply_err(req, 0); return }
            FuseSession.replyStatus(req) { try journal.sync(dataOnly: datasync != 0) }
        }

        ops.fallocate = { req, ino, mode, offset, length, _ in
            let server = FuseServer.from(req)
            guard case .image(let journal)? = server.node(ino) else { fuse_reply_err(req, EACCES); return }
            FuseSession.replyStatus(req) { try journal.fallocate(mode: mode, offset: Int64(offset), length: Int64(length)) }
        }

        ops.readdir = { req, ino, size, off, _ in
            let server = FuseServer.from(req)
            guard ino == FuseServer.rootInode else { fuse_reply_err(req, ENOTDIR); return }
            FuseSession.replyDirectory(req, server.directoryEntries(), size: size, offset: off)
        }

        ops.statfs = { req, _ in FuseSession.replyStatfs(req, of: FuseServer.from(req).directoryFD) }

        // The kernel probes security.capability before writes; ENOSYS once makes it stop asking.
        FuseSession.fixedDirectoryOperations(&ops)
        return ops
    }
}
