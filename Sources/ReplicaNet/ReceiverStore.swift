import Crypto
import Foundation
import ReplicaLog
import Synchronization
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The receiver's side of every request, as blocking calls on its local store: the receiver
/// is that store's only writer. With a `DirectoryStore`, uploads (shipped logs) are staged in
/// the store's own incoming directory, so a commit verifies them there and renames them into
/// the point; the initial copy and the blocks of a resync or rebase are staged under
/// `<store>/.receiver/<vm>/` with their durable progress. With a `cipher` (the encrypted
/// store of `serve --encrypt-key-file`), uploads and the initial copy are staged sealed
/// (`SealedSpool`) and decrypted into memory files for the store call, and resync work
/// copies live in memory: no plaintext reaches the disk. A VM's mutating calls run one at a
/// time (`exclusive`).
public final class ReceiverStore: Sendable {
    public let store: any TargetStore
    /// Staging and the sender bindings: `<store>/.receiver` for a directory store (never a
    /// VM: names start with a letter).
    let stateRoot: String
    /// Seals what is staged between requests; nil stages it as received.
    let cipher: ChunkCipher?
    /// Bytes of an initial copy an encrypted receiver gathers before it hands them to a store
    /// that takes pieces (`REPLICAFS_SEED_WINDOW` bytes, else 64 MiB): what it holds in memory.
    let seedWindow: Int64 = ProcessInfo.processInfo.environment["REPLICAFS_SEED_WINDOW"].flatMap(Int64.init) ?? (64 << 20)
    private let gates = Mutex<[String: Lock]>([:])
    private let views = Mutex<[String: (view: OpenReader, used: UInt64)]>([:])
    /// Resync and rebase work copies of an encrypted store, by VM and disk (memory only).
    let memoryWork = Mutex<[String: [String: MemoryFile]]>([:])
    private let bindingLock = Lock()
    /// Bytes taken in since the receiver started (`GET /v1/stats`).
    public let stats = ReceiverStats()

    public convenience init(store: DirectoryStore) throws {
        try self.init(store: store, stateDirectory: store.root + "/.receiver", cipher: nil)
    }

    /// A receiver of `store` keeping its staging and bindings in `stateDirectory`, sealed with
    /// `cipher` when given.
    public init(store: any TargetStore, stateDirectory: String, cipher: ChunkCipher?) throws {
        self.store = store
        stateRoot = stateDirectory
        self.cipher = cipher
        try FileSystem.mkdirs(stateRoot, mode: 0o700)
    }

    /// Runs `body` as the VM's only mutating request.
    func exclusive<T>(_ vm: String, _ body: () throws -> T) throws -> T {
        let gate = gates.withLock { gates in
            if let g = gates[vm] { return g }
            let g = Lock()
            gates[vm] = g
            return g
        }
        return try gate.withLock(body)
    }

    // MARK: sender bindings

    var bindingsPath: String { stateRoot + "/senders.json" }

    /// The certificate name each VM is bound to (the sender that first protected it).
    public func bindings() -> [String: String] {
        guard let bytes = try? FileSystem.readFile(bindingsPath) else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: Data(bytes))) ?? [:]
    }

    /// Refuses `peer` for `vm` when the VM is bound to another sender; binds an unbound VM to
    /// `peer` when `bind` (a mutating request). Without TLS (`peer` nil) nothing is checked.
    public func authorize(vm: String, peer: String?, bind: Bool) throws {
        guard let peer else { return }
        try bindingLock.withLock {
            var all = bindings()
            if let owner = all[vm] {
                guard owner == peer else { throw Refusal("VM \(vm) is replicated by \(owner): sender \(peer) refused") }
                return
            }
            guard bind else { return }
            all[vm] = peer
            let data = try JSONEncoder().encode(all)
            try data.withUnsafeBytes { try FileSystem.writeAtomically(bindingsPath, $0) }
        }
    }

    /// Forgets a deleted VM's binding.
    func unbind(_ vm: String) throws {
        try bindingLock.withLock {
            var all = bindings()
            guard all.removeValue(forKey: vm) != nil else { return }
            let data = try JSONEncoder().encode(all)
            try data.withUnsafeBytes { try FileSystem.writeAtomically(bindingsPath, $0) }
        }
    }

    // MARK: uploads of shipped logs

    /// Where uploads are staged: the directory store's incoming directory, else the receiver's own.
    func uploadDirectory(_ vm: String) -> String {
        (store as? DirectoryStore)?.stagingDirectory(vm: vm) ?? stateRoot + "/" + vm + "/uploads"
    }

    func uploadPath(_ vm: String, _ name: String) -> String { uploadDirectory(vm) + "/" + name }

    /// The sealed staging of an upload (encrypted store only).
    func uploadSpool(_ vm: String, _ name: String, _ cipher: ChunkCipher) -> SealedSpool {
        SealedSpool(directory: uploadPath(vm, name), name: vm + "/uploads/" + name, cipher: cipher)
    }

    /// The durable size of an upload (0 when none was started): the upload is synced before
    /// its size is answered, so what a resuming sender is told it may skip is on disk.
    public func uploadSize(vm: String, name: String) throws -> Int64 {
        try store.requireVM(vm)
        if let cipher { return try exclusive(vm) { try uploadSpool(vm, name, cipher).size() } }
        return try exclusive(vm) {
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(uploadPath(vm, name), O_RDONLY) } catch let e as SystemError where e.errno == ENOENT { return 0 }
            defer { fd.close() }
            try fd.fdatasync()
            return try fd.size()
        }
    }

    /// Writes `bytes` at `offset` of an upload and starts writing them to disk without waiting;
    /// the answer is the upload's new size. Durability is acknowledged at a coarser step than
    /// the request (an fdatasync per 8 MiB request kept the disk and the link from overlapping):
    /// `uploadSize`, which a sender asks before a log and when it resumes, syncs first, and the
    /// commit syncs every log before a point names it; the sender keeps its logs until then.
    /// An offset past the size is refused (a gap would be zeros).
    public func upload(vm: String, name: String, offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int64 {
        try store.requireVM(vm)
        return try exclusive(vm) {
            if let cipher {
                let spool = uploadSpool(vm, name, cipher)
                let size = try spool.size()
                guard offset <= size else {
                    throw ReplicaError("upload \(name) of VM \(vm): offset \(offset) is past the \(size) bytes received", code: .badRequest)
                }
                let reached = try spool.write(offset: offset, bytes: bytes)
                stats.wroteUpload(bytes.count)
                FaultPoint.reach("receiver-upload-chunk")
                return reached
            }
            try FileSystem.mkdirs(uploadDirectory(vm))
            let path = uploadPath(vm, name)
            let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT, mode: 0o600)
            defer { fd.close() }
            let size = try fd.size()
            guard offset <= size else {
                throw ReplicaError("upload \(name) of VM \(vm): offset \(offset) is past the \(size) bytes received", code: .badRequest)
            }
            if bytes.count > 0 {
                try fd.pwrite(bytes.baseAddress!, count: bytes.count, offset: offset)
                try fd.startWriteback(offset: offset, length: Int64(bytes.count))
            }
            stats.wroteUpload(bytes.count)
            FaultPoint.reach("receiver-upload-chunk")
            return max(size, offset + Int64(bytes.count))
        }
    }

    /// Commits uploaded logs (by name) as the next point: the store verifies every record's
    /// checksum in its own staging area, then renames them into the point.
    public func commit(vm: String, _ request: ReceiverAPI.CommitRequest) throws -> RecoveryPoint {
        try store.requireVM(vm)
        return try exclusive(vm) {
            var logs: [String: [SourceFile]] = [:]
            // Decrypted logs of an encrypted store: open (in memory) until the commit returns.
            var plain: [MemoryFile] = []
            for (disk, names) in request.logs {
                logs[disk] = try names.map { name in
                    let path = uploadPath(vm, name)
                    guard FileSystem.exists(path) else {
                        throw ReplicaError("log \(name) of VM \(vm) was not uploaded", kind: .recoverable, code: .notUploaded)
                    }
                    guard let cipher else { return SourceFile(path) }
                    let file = try uploadSpool(vm, name, cipher).materialize()
                    plain.append(file)
                    return SourceFile(file.path, name: name)
                }
            }
            let point = try withExtendedLifetime(plain) {
                try store.commit(vm: vm, logs: logs, consistency: request.consistency, cut: request.cut, timeNanos: request.timeNanos)
            }
            if let cipher {
                // Committed into the store: the sealed staging goes (a directory store renames its own away).
                for name in request.logs.values.joined() { try uploadSpool(vm, name, cipher).remove() }
            }
            return point
        }
    }

    public func discardUploads(vm: String) throws {
        try exclusive(vm) {
            store.discardReceived(vm: vm)
            if cipher != nil, FileSystem.exists(uploadDirectory(vm)) { try FileSystem.removeTree(uploadDirectory(vm)) }
        }
    }

    // MARK: initial copy

    func seedDirectory(_ vm: String) -> String { stateRoot + "/" + vm + "/seed" }
    func seedProgressPath(_ vm: String) -> String { stateRoot + "/" + vm + "/seed.json" }
    func seedSpool(_ vm: String, _ disk: String, _ cipher: ChunkCipher) -> SealedSpool {
        SealedSpool(directory: seedDirectory(vm) + "/" + disk, name: vm + "/seed/" + disk, cipher: cipher)
    }

    /// The staged copy of `disk` up to `end` goes into a store that takes pieces (decrypted
    /// into memory for the call), then the segments wholly before `end` go.
    func seedPiece(_ vm: String, _ state: InitialCopy, _ disk: String, _ pieces: any PiecewiseSeeding, _ cipher: ChunkCipher,
                   end: Int64, last: Bool) throws {
        let spool = seedSpool(vm, disk, cipher)
        var chains: [String: ChainPosition] = [:]
        for d in state.disks { chains[d.name] = (d.chain, d.nextLSN) }
        let file = try spool.materialize(size: end)
        try withExtendedLifetime(file) {
            try pieces.seedPiece(vm: vm, chains: chains, disk: disk, source: SourceFile(file.path, name: disk), end: end, last: last)
        }
        try spool.drop(before: end)
    }

    func seedProgress(_ vm: String) -> InitialCopy? {
        guard let bytes = try? FileSystem.readFile(seedProgressPath(vm)) else { return nil }
        return try? JSONDecoder().decode(InitialCopy.self, from: Data(bytes))
    }

    func saveSeedProgress(_ vm: String, _ state: InitialCopy) throws {
        let data = try JSONEncoder().encode(state)
        try data.withUnsafeBytes { try FileSystem.writeAtomically(seedProgressPath(vm), $0) }
    }

    /// The initial copy in progress: the receiver's staged copy, else the store's own.
    public func initialCopy(vm: String) -> InitialCopy? { seedProgress(vm) ?? store.initialCopy(vm) }

    /// Starts an initial copy, or answers the progress of the interrupted one (which wins).
    public func seedBegin(vm: String, _ request: ReceiverAPI.SeedBegin) throws -> InitialCopy {
        try exclusive(vm) {
            guard !store.hasVM(vm) else { throw ReplicaError("VM \(vm) already has a replica in \(store.location)", code: .badRequest) }
            if let state = seedProgress(vm) { return state }
            guard !request.disks.isEmpty, request.disks.keys.allSatisfy(ReceiverAPI.validName) else {
                throw ReplicaError("initial copy of VM \(vm): bad disk names", code: .badRequest)
            }
            try FileSystem.mkdirs(seedDirectory(vm), mode: 0o700)
            let state = InitialCopy(disks: request.disks.keys.sorted().map { name in
                InitialCopy.Disk(name: name, chain: request.disks[name]!.chain, nextLSN: request.disks[name]!.nextLSN, copiedTo: 0, done: false)
            })
            try saveSeedProgress(vm, state)
            return state
        }
    }

    /// Writes data of a disk being copied at `offset` (ranges arrive in ascending order, holes
    /// skipped), makes it durable and records the progress; answers the disk's durable progress.
    public func seedWrite(vm: String, disk: String, offset: Int64, bytes: UnsafeRawBufferPointer) throws -> Int64 {
        try exclusive(vm) {
            guard var state = seedProgress(vm), let i = state.disks.firstIndex(where: { $0.name == disk }) else {
                throw ReplicaError("no initial copy of disk \(disk) of VM \(vm) in progress", code: .badRequest)
            }
            guard !state.disks[i].done else { throw ReplicaError("disk \(disk) of VM \(vm) is copied already", code: .badRequest) }
            if let cipher {
                try seedSpool(vm, disk, cipher).write(offset: offset, bytes: bytes)
                // A store taking pieces gets each full window now: memory holds one window.
                if let pieces = store as? any PiecewiseSeeding {
                    let reached = max(state.disks[i].copiedTo, offset + Int64(bytes.count))
                    let boundary = reached / pieces.seedPieceAlignment * pieces.seedPieceAlignment
                    let stored = store.initialCopy(vm)?.disks.first { $0.name == disk }?.copiedTo ?? 0
                    if boundary - stored >= seedWindow {
                        try seedPiece(vm, state, disk, pieces, cipher, end: boundary, last: false)
                    }
                }
            } else {
                let fd = try FileDescriptor.open(seedDirectory(vm) + "/" + disk, O_WRONLY | O_CREAT, mode: 0o600)
                defer { fd.close() }
                if bytes.count > 0 { try fd.pwrite(bytes.baseAddress!, count: bytes.count, offset: offset) }
                try fd.fdatasync()
            }
            stats.wroteSeed(bytes.count)
            state.disks[i].copiedTo = max(state.disks[i].copiedTo, offset + Int64(bytes.count))
            try saveSeedProgress(vm, state)
            return state.disks[i].copiedTo
        }
    }

    /// A disk's copy is whole: its size is set and it is durable.
    public func seedDone(vm: String, disk: String, size: Int64) throws -> Int64 {
        try exclusive(vm) {
            guard var state = seedProgress(vm), let i = state.disks.firstIndex(where: { $0.name == disk }) else {
                throw ReplicaError("no initial copy of disk \(disk) of VM \(vm) in progress", code: .badRequest)
            }
            guard size >= 0 else { throw ReplicaError("bad size \(size)", code: .badRequest) }
            if let cipher, let pieces = store as? any PiecewiseSeeding {
                try seedPiece(vm, state, disk, pieces, cipher, end: size, last: true)
                try seedSpool(vm, disk, cipher).remove()
            }
            if cipher == nil {
                let fd = try FileDescriptor.open(seedDirectory(vm) + "/" + disk, O_WRONLY | O_CREAT, mode: 0o600)
                defer { fd.close() }
                try fd.truncate(to: size)
                try fd.fsync()
            }
            state.disks[i].copiedTo = size
            state.disks[i].done = true
            try saveSeedProgress(vm, state)
            return size
        }
    }

    /// Every disk copied: the staged copies become the VM's base in the store (holes kept),
    /// which makes the VM exist; the staging goes.
    public func seedFinish(vm: String) throws -> Int64 {
        try exclusive(vm) {
            guard let state = seedProgress(vm) else {
                if store.hasVM(vm) { return 0 }
                throw ReplicaError("no initial copy of VM \(vm) in progress", code: .badRequest)
            }
            guard state.disks.allSatisfy(\.done) else {
                throw ReplicaError("initial copy of VM \(vm) is not complete", code: .badRequest)
            }
            if store.hasVM(vm) {
                // Made the base before a crash took the staging's removal: only that is left.
                try FileSystem.removeTree(stateRoot + "/" + vm)
                return 0
            }
            var sources: [String: SourceFile] = [:]
            var chains: [String: ChainPosition] = [:]
            // An encrypted store's staged copies, decrypted into memory for the seed.
            var plain: [MemoryFile] = []
            let piecewise = cipher != nil && store is any PiecewiseSeeding
            for d in state.disks {
                if piecewise {
                    // Every disk is in the store already (its pieces): the seed publishes them.
                } else if let cipher {
                    let file = try seedSpool(vm, d.name, cipher).materialize(size: d.copiedTo)
                    plain.append(file)
                    sources[d.name] = SourceFile(file.path, name: d.name)
                } else {
                    sources[d.name] = SourceFile(seedDirectory(vm) + "/" + d.name)
                }
                if !d.chain.isEmpty { chains[d.name] = (d.chain, d.nextLSN) }
            }
            let copied = try withExtendedLifetime(plain) { try store.seed(vm: vm, sources: sources, chains: chains, progress: nil) }
            try FileSystem.removeTree(stateRoot + "/" + vm)
            return copied
        }
    }

    // MARK: resync and rebase (work copies of the latest point, patched by the client)

    func workDirectory(_ vm: String) -> String { stateRoot + "/" + vm + "/work" }

    /// Copies each disk as of the latest point into the work directory (holes kept); answers
    /// their sizes. The client then patches the blocks that differ from its sources.
    public func workPrepare(vm: String, disks: [String]) throws -> [String: Int64] {
        try store.requireVM(vm)
        return try exclusive(vm) {
            let dir = workDirectory(vm)
            if FileSystem.exists(dir) { try FileSystem.removeTree(dir) }
            memoryWork.withLock { $0[vm] = nil }
            if cipher == nil { try FileSystem.mkdirs(dir, mode: 0o700) }
            var sizes: [String: Int64] = [:]
            var files: [String: MemoryFile] = [:]
            for disk in disks {
                guard ReceiverAPI.validName(disk) else { throw ReplicaError("bad disk name", code: .badRequest) }
                let reader = try store.openPoint(vm: vm, disk: disk, point: nil)
                if cipher != nil {
                    // Encrypted store: the work copy is plaintext, so it lives in memory only.
                    let file = try MemoryFile(name: vm + "/work/" + disk)
                    try reader.copy(to: file.path)
                    files[disk] = file
                } else {
                    try reader.copy(to: dir + "/" + disk)
                }
                sizes[disk] = reader.size
            }
            if cipher != nil { memoryWork.withLock { $0[vm] = files } }
            return sizes
        }
    }

    func workPath(_ vm: String, _ disk: String) throws -> String {
        if cipher != nil {
            guard let file = memoryWork.withLock({ $0[vm]?[disk] }) else {
                throw ReplicaError("no work copy of disk \(disk) of VM \(vm): prepare it first", code: .badRequest)
            }
            return file.path
        }
        let path = workDirectory(vm) + "/" + disk
        guard FileSystem.exists(path) else { throw ReplicaError("no work copy of disk \(disk) of VM \(vm): prepare it first", code: .badRequest) }
        return path
    }

    /// Per-block SHA-256 digests of a work copy (32 bytes each, in block order).
    public func workDigests(vm: String, disk: String, blockSize: Int) throws -> [UInt8] {
        try BlockSync(blockSize: blockSize).checksums(of: try workPath(vm, disk)).flatMap { $0 }
    }

    /// Patches a work copy at `offset`.
    public func workWrite(vm: String, disk: String, offset: Int64, bytes: UnsafeRawBufferPointer) throws {
        try exclusive(vm) {
            let fd = try FileDescriptor.open(try workPath(vm, disk), O_WRONLY)
            defer { fd.close() }
            if bytes.count > 0 { try fd.pwrite(bytes.baseAddress!, count: bytes.count, offset: offset) }
            stats.wroteWork(bytes.count)
        }
    }

    /// Sets a work copy's size (the source's).
    public func workSize(vm: String, disk: String, size: Int64) throws {
        try exclusive(vm) {
            guard size >= 0 else { throw ReplicaError("bad size \(size)", code: .badRequest) }
            let fd = try FileDescriptor.open(try workPath(vm, disk), O_WRONLY)
            defer { fd.close() }
            try fd.truncate(to: size)
        }
    }

    func workSources(_ vm: String) throws -> [String: SourceFile] {
        var sources: [String: SourceFile] = [:]
        if cipher != nil {
            for (name, file) in memoryWork.withLock({ $0[vm] ?? [:] }) { sources[name] = SourceFile(file.path, name: name) }
            return sources
        }
        for name in try FileSystem.list(workDirectory(vm)) { sources[name] = SourceFile(workDirectory(vm) + "/" + name) }
        return sources
    }

    /// The resync from the patched work copies (the store compares them with the latest point
    /// and stores the differing blocks as the next point's first redo log).
    public func resync(vm: String, _ request: ReceiverAPI.ResyncRequest) throws -> ResyncReport {
        try exclusive(vm) {
            let sources = try workSources(vm)
            let held = memoryWork.withLock { $0[vm] }
            defer {
                try? FileSystem.removeTree(workDirectory(vm))
                memoryWork.withLock { $0[vm] = nil }
                withExtendedLifetime(held) {}
            }
            let chains = request.chains.mapValues { (chain: $0.chain, nextLSN: $0.nextLSN) as ChainPosition }
            return try store.resync(vm: vm, sources: sources, chains: chains, reason: request.reason,
                                    blockSize: request.blockSize, progress: nil)
        }
    }

    /// The rebase from the patched work copies.
    public func rebase(vm: String, _ request: ReceiverAPI.RebaseRequest) throws -> ReceiverAPI.RebaseResult {
        try exclusive(vm) {
            let sources = try workSources(vm)
            let held = memoryWork.withLock { $0[vm] }
            defer {
                try? FileSystem.removeTree(workDirectory(vm))
                memoryWork.withLock { $0[vm] = nil }
                withExtendedLifetime(held) {}
            }
            let (point, bytes) = try store.rebase(vm: vm, sources: sources, blockSize: request.blockSize)
            return ReceiverAPI.RebaseResult(point: point, bytes: bytes)
        }
    }

    // MARK: reading points

    /// Opens `disk` at `point`; the view stays cached (by point id) for the range reads that follow.
    public func openPoint(vm: String, disk: String, point: PointSelector?) throws -> ReceiverAPI.OpenedPoint {
        let reader = try view(vm: vm, disk: disk, point: point)
        return ReceiverAPI.OpenedPoint(pointID: reader.pointID, size: reader.size)
    }

    func view(vm: String, disk: String, point: PointSelector?) throws -> any PointReader {
        if case .id(let id)? = point, let cached = views.withLock({ views -> OpenReader? in
            let key = "\(vm)/\(disk)/\(id)"
            guard let entry = views[key] else { return nil }
            views[key] = (entry.view, Clock.nowNanos())
            return entry.view
        }) { return cached.reader }
        let reader = try store.openPoint(vm: vm, disk: disk, point: point)
        let open = OpenReader(reader)
        views.withLock { views in
            views["\(vm)/\(disk)/\(open.reader.pointID)"] = (open, Clock.nowNanos())
            // A few dozen open views at most: the least recently read goes first.
            while views.count > 32, let oldest = views.min(by: { $0.value.used < $1.value.used })?.key { views[oldest] = nil }
        }
        return reader
    }

    /// `count` bytes of `disk` at point `id` from `offset`.
    public func read(vm: String, disk: String, point id: Int, offset: Int64, count: Int, into buffer: UnsafeMutableRawPointer) throws {
        let reader = try view(vm: vm, disk: disk, point: .id(id))
        try reader.read(into: buffer, count: count, offset: offset)
    }

    /// Per-block SHA-256 digests of `disk` at `point` (the disk's size at the point bounds the
    /// last block), what `verify` compares its sources with.
    public func pointDigests(vm: String, disk: String, point: PointSelector?, blockSize: Int) throws -> (size: Int64, digests: [UInt8]) {
        let reader = try store.openPoint(vm: vm, disk: disk, point: point)
        let window = max(1, (4 << 20) / blockSize) * blockSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: window, alignment: 4096)
        defer { buffer.deallocate() }
        var digests: [UInt8] = []
        var at: Int64 = 0
        while at < reader.size {
            let n = Int(min(Int64(window), reader.size - at))
            try reader.read(into: buffer, count: n, offset: at)
            var b = 0
            while b < n {
                let len = min(blockSize, n - b)
                digests += SHA256.hash(data: UnsafeRawBufferPointer(start: buffer + b, count: len))
                b += len
            }
            at += Int64(n)
        }
        return (reader.size, digests)
    }

    // MARK: the rest, as the store does it

    public func delete(vm: String) throws {
        try exclusive(vm) {
            try store.delete(vm: vm)
            memoryWork.withLock { $0[vm] = nil }
            if FileSystem.exists(stateRoot + "/" + vm) { try FileSystem.removeTree(stateRoot + "/" + vm) }
            try unbind(vm)
        }
    }
}

/// A request the receiver refuses for who sent it (403): another sender's VM.
public struct Refusal: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A store's point reader kept open across requests. @unchecked: `PointReader` is not marked
/// Sendable, but every store's reader is safe to share (PointView, ObjectPointReader: Sendable).
final class OpenReader: @unchecked Sendable {
    let reader: any PointReader
    init(_ reader: any PointReader) { self.reader = reader }
}
