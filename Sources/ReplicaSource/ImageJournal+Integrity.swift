import ReplicaSystem
/// The chain checks of an image journal (see `ChainIntegrity`), for the replicator and the FUSE glue.
extension ImageJournal {
    /// Why this image's log chain no longer holds every change since the last resync (its active
    /// log deleted, the image changed outside the mount), found at a cut; nil while it holds.
    public var chainBreak: String? { integrity.broken }

    /// Checks the image and its active log now (at clean shutdown, writes stopped).
    public func checkChainNow() -> String? {
        withActiveLog { log, writesInFlight in integrity.check(image: image, log: log, writesInFlight: writesInFlight) }
    }

    /// After a cut that starts a new chain the replica is synced to (resync, initial copy).
    public func restartChain() {
        integrity.restart(image: image)
        clearDivergence()
    }

    /// After the mount changed the image's mode, owner or times (its ctime moves on).
    public func noteAttributeChange() { integrity.noteChange() }
}
