import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A disk at a recovery point on a receiver, read by range GETs (at most
/// `ReceiverAPI.maxReadBytes` each). The point is fixed by id when it is opened; the receiver
/// keeps the point's view open for the reads, so commits and prunes there do not move it.
public final class RemotePointReader: PointReader, Sendable {
    public let vm: String
    public let disk: String
    public let pointID: Int
    public let size: Int64
    let client: ReceiverClient

    init(client: ReceiverClient, vm: String, disk: String, pointID: Int, size: Int64) {
        self.client = client
        self.vm = vm
        self.disk = disk
        self.pointID = pointID
        self.size = size
    }

    /// Nothing is held here: the receiver presents the point.
    public var overlayBytes: Int { 0 }

    public func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        var done = 0
        while done < count {
            let at = offset + Int64(done)
            guard at < size else { break }
            let n = Int(min(Int64(min(count - done, ReceiverAPI.maxReadBytes)), size - at))
            let answer = try client.call(.GET, "/vms/\(ReceiverClient.segment(vm))/disks/\(ReceiverClient.segment(disk))/data",
                                         query: ["point": String(pointID), "offset": String(at), "count": String(n)])
            guard answer.body.count == n else {
                throw ReplicaError("receiver \(client.location): short read of \(disk) at \(at)", kind: .recoverable)
            }
            answer.body.withUnsafeBytes { _ = memcpy(buffer + done, $0.baseAddress!, n) }
            done += n
        }
        if done < count { memset(buffer + done, 0, count - done) }
    }
}
