import Foundation
import ReplicaSystem
import Testing
@testable import ReplicaObjectStore

/// The client's failures that need no server: a refused connection is recoverable and
/// retried a few times at once.
@Suite(.timeLimit(.minutes(1)))
struct S3TransportTests {
    @Test func lostConnectionIsRecoverable() throws {
        // A port nothing listens on (bound, then closed).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))
        close(fd)
        let config = S3Configuration(endpoint: try S3Endpoint(parsing: "http://127.0.0.1:\(port)"), region: "us-east-1",
                                     credentials: .init(accessKeyID: "a", secretAccessKey: "b"))
        let bucket = S3Bucket(url: S3URL(bucket: "bkt"), configuration: config, retryDelays: [0.05])
        let error = #expect(throws: ReplicaError.self) { _ = try bucket.get("k", range: nil) }
        #expect(error?.kind == .recoverable)
        #expect(error?.description == "S3 GET s3://bkt/k at http://127.0.0.1:\(port) failed: connection refused")
        #expect(bucket.counters.retries == 1)
    }
}
