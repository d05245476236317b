import CFuse
import ReplicaEngine
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The failover mount: a VM's disks as of a recovery point, as writable regular files
/// (`FailoverDisk`: reads from the store, writes to a copy-on-write layer), plus the
/// read-only `network.json` a recovery plan may have written for the hypervisor. The file
/// set is fixed. State hangs off libfuse's userdata; callbacks stay synchronous.
// @unchecked: handed to libfuse as raw userdata; its disks guard their own state.
public final class FailoverServer: @unchecked Sendable {
    public let disks: [FailoverDisk]
    public let mountpoint: String
    /// Where the writable layers and the failover state live.
    public let directory: String
    let session: FuseSession
    let directoryFD: FileDescriptor

    static let rootInode: fuse_ino_t = 1
    static let diskInodeBase: fuse_ino_t = 2
    static let metadataName = "network.json"
    static let timeout: Double = 3600

    public init(disks: [FailoverDisk], directory: String, mountpoint: String, options: MountOptions) throws {
        self.disks = disks
        self.directory = directory
        self.mountpoint = mountpoint
        session = FuseSession(mountpoint: mountpoint, options: options)
        directoryFD = try FileDescriptor.open(directory, O_RDONLY | O_DIRECTORY)
    }

    deinit {
        directoryFD.close()
        for b in readBuffers { b.deallocate() }
    }

    // Reads are answered from pooled buffers: allocating up to 1 MiB per READ maps and faults
    // fresh pages every time.
    private let bufferLock = Lock()
    private var readBuffers: [UnsafeMutableRawPointer] = []
    static let readBufferSize = 1 << 20

    func takeReadBuffer(_ size: Int) -> UnsafeMutableRawPointer {
        guard size <= Self.readBufferSize else { return .allocate(byteCount: max(size, 1), alignment: 4096) }
        return bufferLock.withLock { readBuffers.popLast() } ?? .allocate(byteCount: Self.readBufferSize, alignment: 4096)
    }

    func returnReadBuffer(_ buffer: UnsafeMutableRawPointer, _ size: Int) {
        guard size <= Self.readBufferSize else { return buffer.deallocate() }
        bufferLock.withLock { readBuffers.append(buffer) }
    }

    public func mount(label: String) throws {
        try session.mount(operations: Self.operations(), userdata: Unmanaged.passUnretained(self).toOpaque(),
                          fsname: "replicafs-failover:\(label)")
    }

    /// Serves until unmounted, then makes every write durable.
    public func run() throws {
        session.run()
        for d in disks { try d.sync() }
    }

    public func requestUnmount() -> String? { session.requestUnmount() }

    /// Refuses further writes and makes the ones made so far durable.
    public func freeze() throws {
        for d in disks {
            d.frozen = true
            try d.sync()
        }
    }

    /// Takes writes again: the failback was abandoned and the VM stays here.
    public func unfreeze() {
        for d in disks { d.frozen = false }
    }

    // MARK: inodes

    enum Node {
        case root
        case disk(FailoverDisk)
        case metadata
    }

    var metadataInode: fuse_ino_t { Self.diskInodeBase + fuse_ino_t(disks.count) }

    func node(_ ino: fuse_ino_t) -> Node? {
        if ino == Self.rootInode { return .root }
        if ino == metadataInode { return .metadata }
        let i = Int(ino) - Int(Self.diskInodeBase)
        return i >= 0 && i < disks.count ? .disk(disks[i]) : nil
    }

    func lookup(_ name: String) -> fuse_ino_t? {
        if let i = disks.firstIndex(where: { $0.name == name }) { return Self.diskInodeBase + fuse_ino_t(i) }
        if name == Self.metadataName, FileSystem.exists(directory + "/" + name) { return metadataInode }
        return nil
    }

    func attributes(_ ino: fuse_ino_t) throws -> stat {
        guard let node = node(ino) else { throw SystemError(errno: ENOENT, operation: "getattr", path: "inode \(ino)") }
        var st = try directoryFD.stat()
        switch node {
        case .root:
            st.st_mode = S_IFDIR | 0o755
        case .disk(let d):
            let size = d.size
            st.st_mode = S_IFREG | 0o644
            st.st_nlink = 1
            st.st_size = Int(size)
            st.st_blocks = Int((size + 511) / 512)
            st.st_blksize = 4096
            st.st_mtim = d.modifiedTime
            st.st_ctim = st.st_mtim
        case .metadata:
            st = try FileSystem.stat(directory + "/" + Self.metadataName)
            st.st_mode = S_IFREG | 0o444
        }
        st.st_ino = __ino_t(ino)
        return st
    }

    func entries() -> [(String, fuse_ino_t, mode_t)] {
        var e: [(String, fuse_ino_t, mode_t)] = [(".", Self.rootInode, S_IFDIR), ("..", Self.rootInode, S_IFDIR)]
        for (i, d) in disks.enumerated() { e.append((d.name, Self.diskInodeBase + fuse_ino_t(i), S_IFREG)) }
        if FileSystem.exists(directory + "/" + Self.metadataName) { e.append((Self.metadataName, metadataInode, S_IFREG)) }
        return e
    }

    static func from(_ req: fuse_req_t?) -> FailoverServer {
        Unmanaged<FailoverServer>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }
}
