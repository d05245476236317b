import ReplicaStore

extension RemoteStore: SendThrottling {
    /// This receiver's client, throttled per upload request (seed chunks, log chunks after
    /// compression, resync blocks).
    public func throttling(_ throttle: @escaping @Sendable (Int) -> Void) -> any TargetStore {
        RemoteStore(client: client, throttle: throttle, resumeSeconds: resumeSeconds)
    }
}
