import ReplicaObjectStore
import ReplicaStore

/// Makes `s3://BUCKET/PREFIX` targets open as an `ObjectStore` over `S3Bucket`: endpoint,
/// region and credentials from the VM's target options, else the environment as the AWS tools
/// read it (S3Configuration). A malformed URL or missing credentials fail before any request.
enum ObjectStoreOpener {
    static func register() {
        TargetStoreOpeners.register(scheme: S3URL.scheme) { target, options in
            let url = try S3URL(parsing: target)
            let bucket = S3Bucket(url: url, configuration: try S3Configuration.resolve(options: options))
            return try ObjectStore(bucket: bucket, target: target)
        }
    }
}
