import Foundation
import ReplicaStore
import ReplicaSystem

/// The initial copy in pieces (the encrypted receiver): each piece appends the disk's chunk
/// objects from its saved progress and saves the chunk table and the progress, as `seed` does
/// every 64 chunks; `seed` with no sources then publishes the first catalog.
extension ObjectStore: PiecewiseSeeding {
    public var seedPieceAlignment: Int64 { Int64(chunkSize) }

    public func seedPiece(vm: String, chains: [String: ChainPosition], disk: String, source: SourceFile, end: Int64, last: Bool) throws {
        guard !hasVM(vm) else { throw ReplicaError("VM \(vm) already has a replica in \(location)") }
        var state = initialCopy(vm) ?? InitialCopy(disks: chains.keys.sorted().map { name in
            InitialCopy.Disk(name: name, chain: chains[name]!.chain, nextLSN: chains[name]!.nextLSN, copiedTo: 0, done: false)
        })
        guard let i = state.disks.firstIndex(where: { $0.name == disk }) else {
            throw ReplicaError("disk \(disk) is not part of the initial copy of VM \(vm)", code: .badRequest)
        }
        guard !state.disks[i].done else { return }
        guard last || end % Int64(chunkSize) == 0 else {
            throw ReplicaError("a piece of an initial copy must end at a chunk boundary (\(end))", kind: .nonRecoverable)
        }
        let key = ObjectLayout.initialTable(vm, disk)
        var table = ChunkTable()
        if state.disks[i].copiedTo > 0, let bytes = try bucket.get(key, range: nil) { table = try ChunkTable(decoding: bytes, key: key) }
        table.digests = Array(table.digests.prefix(Int(state.disks[i].copiedTo / Int64(chunkSize))))
        guard Int64(table.digests.count) * Int64(chunkSize) <= end else { return } // this piece is stored already
        let size = try copyChunks(vm, source: source, into: &table) { _, _, _ in }
        guard size == end else { throw ReplicaError("piece of disk \(disk) of VM \(vm) ends at \(size), not \(end)", kind: .nonRecoverable) }
        try putChecked(key, table.encoded())
        state.disks[i].copiedTo = end
        state.disks[i].done = last
        try saveInitial(vm, state)
    }
}
