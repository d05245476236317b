import Dispatch
import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The initial copy: each disk becomes chunk objects (holes and zero chunks are not stored)
/// and a chunk table; progress is saved as the copy goes, so an interrupted copy resumes; the
/// first catalog generation, written last, makes the VM exist.
extension ObjectStore {
    public func initialCopy(_ vm: String) -> InitialCopy? {
        guard !hasVM(vm), let bytes = try? bucket.get(ObjectLayout.initialState(vm), range: nil) else { return nil }
        return try? JSONDecoder().decode(InitialCopy.self, from: Data(bytes))
    }

    func saveInitial(_ vm: String, _ state: InitialCopy) throws {
        try putChecked(ObjectLayout.initialState(vm), Array(try JSONEncoder().encode(state)))
    }

    @discardableResult
    public func seed(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition],
                     progress: ((Int64) -> Void)?) throws -> Int64 {
        guard !hasVM(vm) else { throw ReplicaError("VM \(vm) already has a replica in \(location)") }
        var state = initialCopy(vm) ?? InitialCopy(disks: sources.keys.sorted().map { name in
            InitialCopy.Disk(name: name, chain: chains[name]?.chain ?? "", nextLSN: chains[name]?.nextLSN ?? 0, copiedTo: 0, done: false)
        })
        try saveInitial(vm, state)
        var copied: Int64 = 0
        var tables: [String: ChunkTable] = [:]
        for i in state.disks.indices {
            let disk = state.disks[i]
            var table = ChunkTable()
            if disk.copiedTo > 0, let bytes = try bucket.get(ObjectLayout.initialTable(vm, disk.name), range: nil) {
                table = try ChunkTable(decoding: bytes, key: ObjectLayout.initialTable(vm, disk.name))
            }
            if disk.done {
                tables[disk.name] = table
                continue
            }
            guard let source = sources[disk.name] else { throw ReplicaError("disk \(disk.name) of VM \(vm) has no source") }
            // Resume at the last saved chunk boundary the table covers.
            table.digests = Array(table.digests.prefix(Int(disk.copiedTo / Int64(chunkSize))))
            var lastSaved = Int64(table.digests.count) * Int64(chunkSize)
            let size = try copyChunks(vm, source: source, into: &table) { n, reached, soFar in
                copied += n
                progress?(n)
                if reached - lastSaved >= 64 * Int64(self.chunkSize) {
                    // Durable progress: the chunks first, then the table and the mark that say so.
                    try self.putChecked(ObjectLayout.initialTable(vm, disk.name), soFar.encoded())
                    state.disks[i].copiedTo = reached
                    try self.saveInitial(vm, state)
                    lastSaved = reached
                }
            }
            try putChecked(ObjectLayout.initialTable(vm, disk.name), table.encoded())
            state.disks[i].copiedTo = size
            state.disks[i].done = true
            try saveInitial(vm, state)
            tables[disk.name] = table
        }
        var catalog = ObjectCatalog(generation: 0, store: StoreCatalog(vm: vm, disks: state.disks.map(\.name)), chunkSize: chunkSize,
                                    bases: [:], baseSizes: [:], logs: [:], resyncLogs: [:], failover: nil)
        catalog.store.baseThrough = 0
        for (i, d) in state.disks.enumerated() {
            catalog.store.disks[i].size = d.copiedTo
            if !d.chain.isEmpty {
                catalog.store.disks[i].chain = d.chain
                catalog.store.disks[i].nextLSN = d.nextLSN
            }
            catalog.bases[d.name] = try putChecked(ObjectLayout.baseTable(vm, 1, d.name), tables[d.name]!.encoded())
            catalog.baseSizes[d.name] = d.copiedTo
        }
        try publish(&catalog, after: 0)
        for object in try bucket.list(prefix: ObjectLayout.root(vm) + "initial/") { try? bucket.delete(object.key) }
        return copied
    }

    /// Appends `source`'s chunks from the table's end to `table`, uploading those that hold
    /// data (several at once); holes are skipped without reading. `saved(bytes, reachedOffset)`
    /// runs after each batch. Returns the source's size.
    func copyChunks(_ vm: String, source: SourceFile, into table: inout ChunkTable,
                            saved: (Int64, Int64, ChunkTable) throws -> Void) throws -> Int64 {
        let fd = try FileDescriptor.open(source.localPath, O_RDONLY)
        defer { fd.close() }
        let size = try fd.size()
        let cs = Int64(chunkSize)
        let batch = 8
        var at = Int64(table.digests.count) * cs
        while at < size {
            var pieces: [(slot: Int, bytes: [UInt8])] = []
            var digests: [String?] = []
            var read: Int64 = 0
            for slot in 0..<batch where at + Int64(slot) * cs < size {
                let start = at + Int64(slot) * cs
                let n = Int(min(cs, size - start))
                if !Self.hasData(fd, start, n) {
                    digests.append(nil)
                    continue
                }
                var bytes = [UInt8](repeating: 0, count: n)
                var got = 0
                try bytes.withUnsafeMutableBytes { b in
                    while got < n {
                        let k = try fd.pread(into: b.baseAddress! + got, count: n - got, offset: start + Int64(got))
                        if k == 0 { break }
                        got += k
                    }
                }
                read += Int64(n)
                if bytes.allSatisfy({ $0 == 0 }) {
                    digests.append(nil)
                } else {
                    digests.append(ObjectDigest.sha256(bytes))
                    pieces.append((digests.count - 1, bytes))
                }
            }
            try putChunks(vm, pieces.map { ($0.bytes, digests[$0.slot]!) })
            table.digests += digests
            at += Int64(digests.count) * cs
            try saved(read, min(at, size), table)
        }
        return size
    }

    /// Whether `count` bytes at `offset` hold any data (SEEK_DATA; true when unknown).
    static func hasData(_ fd: FileDescriptor, _ offset: Int64, _ count: Int) -> Bool {
        let seekData: Int32 = 3
        let next = lseek(fd.rawValue, off_t(offset), seekData)
        if next < 0 { return errno != ENXIO }
        return Int64(next) < offset + Int64(count)
    }

    /// Uploads chunk objects (content-addressed: a chunk already stored is the same bytes),
    /// four at a time, each checked by its ETag.
    func putChunks(_ vm: String, _ chunks: [(bytes: [UInt8], sha: String)]) throws {
        guard !chunks.isEmpty else { return }
        let failure = Mutex<ReplicaError?>(nil)
        let lanes = min(4, chunks.count)
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for i in stride(from: lane, to: chunks.count, by: lanes) {
                do {
                    try putChecked(chunkKey(vm, chunks[i].sha), chunks[i].bytes)
                } catch {
                    let e = error as? ReplicaError ?? ReplicaError("\(error)", kind: .recoverable)
                    failure.withLock { $0 = $0 ?? e }
                    return
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
