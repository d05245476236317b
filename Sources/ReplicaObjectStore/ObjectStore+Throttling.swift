import ReplicaStore

/// The bandwidth limit at the bucket: `ThrottledStore` hands an object store the limit, and
/// the store's writes (chunk PUTs of the initial copy, log and resync uploads, tables and
/// catalogs) pay their bytes as they go, so the limit holds for what crosses to the bucket and
/// the request time between payments is not lost to it. Paying whole commits ahead instead
/// held a copy to RGW at 0.7-0.85x of the limit. With client-side encryption the sealed bytes
/// are what is counted (the throttle sits below the SealedBucket).
extension ObjectStore: SendThrottling {
    public func throttling(_ throttle: @escaping @Sendable (Int) -> Void) -> any TargetStore {
        if let sealed = bucket as? SealedBucket {
            let paced = SealedBucket(ThrottledBucket(sealed.inner, throttle: throttle), cipher: sealed.cipher,
                                     chunkSize: sealed.chunkSize, stagingDirectory: sealed.stagingDirectory)
            return ObjectStore(sharing: self, bucket: paced)
        }
        return ObjectStore(sharing: self, bucket: ThrottledBucket(bucket, throttle: throttle))
    }
}
