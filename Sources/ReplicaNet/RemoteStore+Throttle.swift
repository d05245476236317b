import ReplicaStore

extension RemoteStore: SendThrottling {
    /// This receiver's client, throttled per upload request (seed chunks, log chunks after
    /// compression, resync blocks).
    public func throttling(_ throttle: @escaping @Sendable (Int) -> Void) -> any TargetStore {
        RemoteStore(client: client, throttle: throttle, resumeSeconds: resumeSeconds)
    }

    /// Raw bytes per upload request: a throttled store sends smaller requests, so the limit is
    /// paid as the bytes go (a request pays before it is sent; the bucket's burst, 0.1 s,
    /// covers the time a 1 MiB request takes on the wire) instead of in seconds-long lumps.
    var sendChunkBytes: Int { throttle == nil ? ReceiverAPI.chunkBytes : Self.throttledChunkBytes }
    static let throttledChunkBytes = 1 << 20
}
