import CFuse
import ReplicaCore
#if canImport(Glibc)
import Glibc
#endif

/// The FUSE glue: a low-level libfuse session that exposes a `DiskSet`'s images as regular
/// files and its change logs as read-only files, and routes every change into the images'
/// journals. All per-mount state hangs off libfuse's userdata, so one process can serve
/// several mounts. Callbacks run on libfuse's threads and stay synchronous.
public final class FuseServer: @unchecked Sendable {
    public let disks: DiskSet
    public let mountpoint: String
    public let options: MountOptions
    private var session: OpaquePointer?
    let directoryFD: FileDescriptor
    private let logInodes = Lock()
    private var inodeOfLog: [String: fuse_ino_t] = [:]
    private var logOfInode: [fuse_ino_t: String] = [:]
    private var nextLogInode: fuse_ino_t = 1 << 32
    private let ownerUID = getuid()
    private let ownerGID = getgid()

    static let rootInode: fuse_ino_t = 1
    static let imageInodeBase: fuse_ino_t = 2
    static let stableTimeout: Double = 3600
    /// Set once a clean unmount has been requested (unmount command or SIGTERM).
    public private(set) var unmountRequested = false

    public init(disks: DiskSet, mountpoint: String, options: MountOptions) throws {
        self.disks = disks
        self.mountpoint = mountpoint
        self.options = options
        directoryFD = try FileDescriptor.open(disks.directory, O_RDONLY | O_DIRECTORY)
    }

    deinit {
        directoryFD.close()
        if let session { fuse_session_destroy(session) }
    }

    // MARK: lifecycle

    /// Creates the session and mounts it; after this returns the mount is live.
    public func mount() throws {
        var argv = ["replicafs", "-o", mountOptionString()]
        var cargs = argv.map { strdup($0) }
        defer { cargs.forEach { free($0) } }
        var ops = Self.operations()
        let me = Unmanaged.passUnretained(self).toOpaque()
        let se = cargs.withUnsafeMutableBufferPointer { buf in
            rfs_session_new(Int32(buf.count), buf.baseAddress, &ops, me)
        }
        argv.removeAll()
        guard let se else { throw ReplicaError("cannot create a FUSE session (bad mount options?)") }
        guard fuse_session_mount(se, mountpoint) == 0 else {
            fuse_session_destroy(se)
            throw ReplicaError("cannot mount \(mountpoint): the kernel refused the FUSE mount")
        }
        session = se
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

    /// Serves requests until the filesystem is unmounted, then seals every log cleanly.
    public func run(beforeClose: () -> Void = {}) throws {
        guard let se = session else { return }
        let rc = rfs_session_loop_mt(se, 0, 10, options.maxThreads)
        if rc != 0 || !unmountRequested && MountTable.mount(at: mountpoint)?.fsType == "fuse.replicafs" {
            fuse_session_unmount(se)
        }
        beforeClose()
        try disks.close()
    }

    /// Asks the kernel to unmount (dirty pages are written back through us first). Returns
    /// an error text when the mount is busy; the daemon then keeps serving.
    public func requestUnmount() -> String? {
        unmountRequested = true
        if let error = Unmounter.unmount(mountpoint) {
            unmountRequested = false
            return error
        }
        return nil
    }

    private func mountOptionString() -> String {
        var o = ["fsname=replicafs:\(disks.directory.replacingAll(",", with: "_"))", "subtype=replicafs",
                 "default_permissions"]
        if options.allowOther { o.append("allow_other") }
        return o.joined(separator: ",")
    }

    // MARK: inodes

    enum Node {
        case root
        case image(ImageJournal)
        case log(String)
    }

    func node(_ ino: fuse_ino_t) -> Node? {
        if ino == Self.rootInode { return .root }
        let index = Int(ino) - Int(Self.imageInodeBase)
        if ino < (1 << 32), index >= 0, index < disks.images.count { return .image(disks.images[index]) }
        return logInodes.withLock { logOfInode[ino] }.map { .log($0) }
    }

    func inode(ofLog name: String) -> fuse_ino_t {
        logInodes.withLock {
            if let ino = inodeOfLog[name] { return ino }
            let ino = nextLogInode
            nextLogInode += 1
            inodeOfLog[name] = ino
            logOfInode[ino] = name
            return ino
        }
    }

    func attributes(_ ino: fuse_ino_t) throws -> stat {
        guard let node = node(ino) else { throw SystemError(errno: ENOENT, operation: "getattr", path: "inode \(ino)") }
        var st: stat
        switch node {
        case .root:
            st = try directoryFD.stat()
            st.st_mode = (st.st_mode & ~0o7777) | 0o755
        case .image(let j):
            st = try j.image.stat()
        case .log(let name):
            st = try FileSystem.stat(disks.directory + "/" + name)
            st.st_mode &= ~0o222 // logs are read-only in the mount
        }
        st.st_ino = __ino_t(ino)
        return st
    }

    func lookupInode(_ name: String) -> fuse_ino_t? {
        if let i = disks.images.firstIndex(where: { $0.name == name }) { return Self.imageInodeBase + fuse_ino_t(i) }
        if LogName.isLog(name), FileSystem.exists(disks.directory + "/" + name) { return inode(ofLog: name) }
        return nil
    }

    /// Entries of the root directory: images first, then the logs present now.
    func directoryEntries() -> [(String, fuse_ino_t, mode_t)] {
        var entries: [(String, fuse_ino_t, mode_t)] = [(".", Self.rootInode, S_IFDIR), ("..", Self.rootInode, S_IFDIR)]
        for (i, j) in disks.images.enumerated() { entries.append((j.name, Self.imageInodeBase + fuse_ino_t(i), S_IFREG)) }
        let logs = ((try? FileSystem.list(disks.directory)) ?? []).filter { LogName.parse($0) != nil }
        for name in logs { entries.append((name, inode(ofLog: name), S_IFREG)) }
        return entries
    }

    static func from(_ req: fuse_req_t?) -> FuseServer {
        Unmanaged<FuseServer>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }
}

extension String {
    func replacingAll(_ a: Character, with b: String) -> String {
        split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
    }
}
