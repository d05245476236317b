#if canImport(Glibc)
import Glibc
#endif

/// One disk of a VM as of a recovery point, read-only and without a copy: the replica's
/// bytes with the undo logs of every later point over them (`UndoOverlay`). A live view
/// (a test failover, while replication goes on into the same replica) takes the store's
/// shared lock for each read, so it never sees a commit half applied, and first adds the
/// undo logs of points committed since, so it stays at its point.
final class PointView: @unchecked Sendable {
    let store: TargetStore
    let vm: String
    let disk: String
    let pointID: Int
    let live: Bool
    private let replica: FileDescriptor
    private let overlay = UndoOverlay()
    private let mutex = Lock()
    private var stamp: [String] = []

    init(store: TargetStore, vm: String, disk: String, pointID: Int, live: Bool) throws {
        self.store = store
        self.vm = vm
        self.disk = disk
        self.pointID = pointID
        self.live = live
        replica = try FileDescriptor.open(store.replicaPath(vm, disk), O_RDONLY)
        do {
            try store.withLock(vm, exclusive: false) {
                let catalog = try StoreCatalog.load(store.catalogPath(vm))
                for later in catalog.points where later.id > pointID {
                    guard FileSystem.isDirectory(store.pointDirectory(vm, later.id)) else {
                        throw ReplicaError("undo data of point \(later.id) of VM \(vm) is missing: cannot go back to point \(pointID)")
                    }
                }
                try refresh()
            }
        } catch {
            replica.close()
            throw error
        }
    }

    deinit { replica.close() }

    /// Bytes of undo logs mapped (what mounting at this point cost, beside the replica).
    var overlayBytes: Int { mutex.withLock { overlay.bytesMapped } }

    /// Fills `count` bytes at `offset` as of the point; past the replica's end reads zeros.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        guard live else { return try readLocked(into: buffer, count: count, offset: offset) }
        try mutex.withLock {
            try store.withLock(vm, exclusive: false) {
                if try currentStamp() != stamp { try refresh() }
                try readLocked(into: buffer, count: count, offset: offset)
            }
        }
    }

    private func readLocked(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        var done = 0
        while done < count {
            let n = try replica.pread(into: buffer + done, count: count - done, offset: offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        if done < count { memset(buffer + done, 0, count - done) }
        overlay.overlay(buffer, offset: offset, count: count)
    }

    /// What changes when a commit or resync starts, ends or is rolled back: the catalog
    /// (replaced by rename) and the names in the points directory (a pending or resync
    /// directory appears, is renamed or removed). Names, not timestamps: two commits within
    /// one clock tick still differ.
    private func currentStamp() throws -> [String] {
        let c = try FileSystem.stat(store.catalogPath(vm))
        let names = try FileSystem.list(store.vmDirectory(vm) + "/points").sorted()
        return ["\(c.st_ino):\(c.st_mtim.tv_sec).\(c.st_mtim.tv_nsec):\(c.st_size)"] + names
    }

    /// Adds the undo logs of every later point, committed or pending, nearest first. A pending
    /// point's undo holds the bytes of the last committed state, which is what the view needs
    /// whether that commit is later finished or rolled back.
    private func refresh() throws {
        stamp = try currentStamp()
        let dir = store.vmDirectory(vm) + "/points"
        // A resync before point N (`N.resync`) changed the replica before N's commit did: its
        // pre-images are the nearer ones, so it comes first among N's.
        func rank(_ name: String) -> Int { name.hasSuffix(".resync") ? 0 : 1 }
        let later = try FileSystem.list(dir).compactMap { name -> (Int, String)? in
            guard let id = Int(name.prefix(8)), id > pointID else { return nil }
            return (id, name)
        }.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : rank($0.1) < rank($1.1) }
        for (_, name) in later {
            let undo = dir + "/" + name + "/" + disk + ".undo.hrl"
            guard FileSystem.exists(undo) else { continue } // the disk did not change at that point
            try overlay.add(undoLog: undo, allowUnsealed: name.hasSuffix(".resync"))
        }
    }
}
