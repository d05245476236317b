/// A store that takes an initial copy in pieces as it arrives, so a receiver that must not
/// stage the copy in plaintext (the encrypted store) holds only a window of it in memory.
/// The pieces are then made the VM's base by `seed` with no sources: every disk is done.
public protocol PiecewiseSeeding: TargetStore {
    /// The chunk size pieces are cut at: `end` of a piece that is not the last is a multiple.
    var seedPieceAlignment: Int64 { get }

    /// Stores disk `disk` of `vm`'s initial copy from the store's saved progress of that disk up
    /// to `end`, read from `source` (the disk's bytes at their offsets; nothing before the
    /// saved progress is read); with `last`, `end` is the disk's size and the disk is done.
    /// Starts the copy with `chains` (every disk's) when none is in progress. Durable on return.
    func seedPiece(vm: String, chains: [String: ChainPosition], disk: String, source: SourceFile, end: Int64, last: Bool) throws
}
