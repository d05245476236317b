import CFuse
import CLinux
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The failover mount's libfuse low-level operation table: every entry finds its
/// `FailoverServer` through the request's userdata and answers synchronously.
extension FailoverServer {
    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()

        ops.`init` = { _, conn in
            guard let conn else { return }
            // Size changes come as SETATTR, and the kernel may cache writes (fsync is durability).
            conn.pointee.want &= ~UInt32(FUSE_CAP_ATOMIC_O_TRUNC)
            if conn.pointee.capable & UInt32(FUSE_CAP_WRITEBACK_CACHE) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_WRITEBACK_CACHE)
            }
            conn.pointee.max_write = 1 << 20
            conn.pointee.max_background = 64
            conn.pointee.congestion_threshold = 48
        }

        ops.lookup = { req, parent, name in
            let server = FailoverServer.from(req)
            guard parent == FailoverServer.rootInode, let name, let ino = server.lookup(String(cString: name)) else {
                fuse_reply_err(req, ENOENT)
                return
            }
            do {
                var e = fuse_entry_param()
                e.ino = ino
                e.attr = try server.attributes(ino)
                e.attr_timeout = FailoverServer.timeout
                e.entry_timeout = FailoverServer.timeout
                fuse_reply_entry(req, &e)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.getattr = { req, ino, _ in
            let server = FailoverServer.from(req)
            do {
                var st = try server.attributes(ino)
                fuse_reply_attr(req, &st, FailoverServer.timeout)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.setattr = { req, ino, attr, toSet, _ in
            let server = FailoverServer.from(req)
            guard case .disk(let disk)? = server.node(ino), let attr else {
                fuse_reply_err(req, ino == FailoverServer.rootInode ? EPERM : EACCES)
                return
            }
            do {
                if toSet & FUSE_SET_ATTR_SIZE != 0 { try disk.setSize(Int64(attr.pointee.st_size)) }
                // Mode, owner and times are the mount's, not the disk's: accepted, not kept.
                var st = try server.attributes(ino)
                fuse_reply_attr(req, &st, FailoverServer.timeout)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.open = { req, ino, fi in
            let server = FailoverServer.from(req)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            switch server.node(ino) {
            case .disk?:
                if fi.pointee.flags & RFS_O_DIRECT != 0 { fi.pointee.direct_io = 1 } else { fi.pointee.keep_cache = 1 }
                fuse_reply_open(req, fi)
            case .metadata?:
                guard fi.pointee.flags & O_ACCMODE == O_RDONLY else { fuse_reply_err(req, EACCES); return }
                fi.pointee.direct_io = 1
                fuse_reply_open(req, fi)
            case .root?: fuse_reply_err(req, EISDIR)
            case nil: fuse_reply_err(req, ENOENT)
            }
        }

        ops.read = { req, ino, size, off, _ in
            let server = FailoverServer.from(req)
            let buffer = server.takeReadBuffer(size)
            defer { server.returnReadBuffer(buffer, size) }
            do {
                let n: Int
                switch server.node(ino) {
                case .disk(let d)?:
                    n = try d.read(into: buffer, count: size, offset: Int64(off))
                case .metadata?:
                    let fd = try FileDescriptor.open(server.directory + "/" + FailoverServer.metadataName, O_RDONLY)
                    defer { fd.close() }
                    n = try fd.pread(into: buffer, count: size, offset: Int64(off))
                default:
                    fuse_reply_err(req, EISDIR)
                    return
                }
                fuse_reply_buf(req, buffer.assumingMemoryBound(to: CChar.self), n)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
            }
        }

        ops.write = { req, ino, buf, size, off, _ in
            let server = FailoverServer.from(req)
            guard case .disk(let disk)? = server.node(ino), let buf else { fuse_reply_err(req, EACCES); return }
            do {
                try disk.write(UnsafeRawBufferPointer(start: buf, count: size), offset: Int64(off))
                fuse_reply_write(req, size)
            } catch {
                fuse_reply_err(req, FuseSession.errno(of: error))
                // Refused (frozen) or failed: the cached bytes must not stay readable.
                server.session.dropCachedPages(ino, offset: Int64(off), length: size)
            }
        }

        ops.release = { req, _, _ in fuse_reply_err(req, 0) }

        ops.fsync = { req, ino, _, _ in
            let server = FailoverServer.from(req)
            guard case .disk(let disk)? = server.node(ino) else { fuse_reply_err(req, 0); return }
            FuseSession.replyStatus(req) { try disk.sync() }
        }

        ops.fallocate = { req, ino, mode, offset, length, _ in
            let server = FailoverServer.from(req)
            guard case .disk(let disk)? = server.node(ino) else { fuse_reply_err(req, EACCES); return }
            FuseSession.replyStatus(req) { try disk.fallocate(mode: mode, offset: Int64(offset), length: Int64(length)) }
        }

        ops.readdir = { req, ino, size, off, _ in
            let server = FailoverServer.from(req)
            guard ino == FailoverServer.rootInode else { fuse_reply_err(req, ENOTDIR); return }
            FuseSession.replyDirectory(req, server.entries(), size: size, offset: off)
        }

        ops.statfs = { req, _ in FuseSession.replyStatfs(req, of: FailoverServer.from(req).directoryFD) }

        FuseSession.fixedDirectoryOperations(&ops)
        return ops
    }
}
