import ReplicaObjectStore
import ReplicaStore

/// Makes `s3://BUCKET/PREFIX` targets open as an `ObjectStore` over `S3Bucket`: endpoint,
/// region and credentials from the VM's target options, else the environment as the AWS tools
/// read it (S3Configuration), sealed by the key file of `--encrypt-key-file` (SealedBucket,
/// ObjectStoreEncryption). A malformed URL, missing credentials or a bad key file fail before
/// any request; a key that does not fit the store fails before anything is written.
enum ObjectStoreOpener {
    static func register() {
        TargetStoreOpeners.register(scheme: S3URL.scheme) { target, options in
            let url = try S3URL(parsing: target)
            let s3 = S3Bucket(url: url, configuration: try S3Configuration.resolve(options: options))
            // Client-side encryption: a SealedBucket over S3 when the store is encrypted (its
            // marker and the key file must agree), sealed uploads staged beside the cache.
            let cipher = try options.encryptKeyFile.map { try ChunkCipher(keyFile: $0) }
            let bucket = try ObjectStoreEncryption.bucket(s3, target: target, cipher: cipher, keyFile: options.encryptKeyFile,
                                                          stagingDirectory: ObjectStore.defaultCacheDirectory + "/staging")
            return try ObjectStore(bucket: bucket, target: target)
        }
    }
}
