import CFuse
import ReplicaLog
import ReplicaSource
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The FUSE glue: a low-level libfuse session that exposes a `DiskSet`'s images as regular
/// files and its change logs as read-only files, and routes every change into the images'
/// journals. All per-mount state hangs off libfuse's userdata, so one process can serve
/// several mounts. Callbacks run on libfuse's threads and stay synchronous.
// @unchecked: handed to libfuse as raw userdata; the journals guard their own state.
public final class FuseServer: @unchecked Sendable {
    public let disks: DiskSet
    public let mountpoint: String
    public let options: MountOptions
    let session: FuseSession
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

    public init(disks: DiskSet, mountpoint: String, options: MountOptions) throws {
        self.disks = disks
        self.mountpoint = mountpoint
        self.options = options
        session = FuseSession(mountpoint: mountpoint, options: options)
        directoryFD = try FileDescriptor.open(disks.directory, O_RDONLY | O_DIRECTORY)
    }

    deinit { directoryFD.close() }

    // MARK: lifecycle

    /// Creates the session and mounts it; after this returns the mount is live.
    public func mount() throws {
        try session.mount(operations: Self.operations(), userdata: Unmanaged.passUnretained(self).toOpaque(),
                          fsname: "replicafs:\(disks.directory)")
    }

    /// Serves requests until the filesystem is unmounted, then seals every log cleanly.
    public func run(beforeClose: () -> Void = {}) throws {
        session.run()
        beforeClose()
        try disks.close()
    }

    /// Asks the kernel to unmount (dirty pages are written back through us first). Returns
    /// an error text when the mount is busy; the daemon then keeps serving.
    public func requestUnmount() -> String? { session.requestUnmount() }

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
            // The disks directory's owner and mode: who may list the images there may list them here.
            st = try directoryFD.stat()
        case .image(let j):
            st = try j.image.stat()
        case .log(let name):
            st = try FileSystem.stat(disks.directory + "/" + name)
            st.st_mode &= ~0o222 // logs are read-only in the mount
            // A log holds its image's data: it is shown with the image's owner, and readable
            // only by those who may read the image now (its mode may have changed since).
            if let image = LogName.parse(name).flatMap({ disks.journal(named: $0.image) }), let ist = try? image.image.stat() {
                st.st_uid = ist.st_uid
                st.st_gid = ist.st_gid
                st.st_mode = (st.st_mode & ~0o7777) | (st.st_mode & ist.st_mode & 0o444)
            }
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
