/// A store that paces its own sends chunk by chunk (a receiver's client, whose requests carry
/// at most a chunk): `ThrottledStore` hands it the limit instead of pacing whole calls, so the
/// bytes on the wire, compressed or not, are what the limit counts.
public protocol SendThrottling: TargetStore {
    /// The same store, calling `throttle` with each request's bytes before it is sent.
    func throttling(_ throttle: @escaping @Sendable (Int) -> Void) -> any TargetStore
}
