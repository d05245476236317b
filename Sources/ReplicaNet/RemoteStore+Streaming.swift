import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

extension RemoteStore: LogStreaming {
    /// Appends the active log's final bytes to its upload on the receiver, the upload
    /// `receive` resumes at the cut (docs/secondary-site.md, "Streaming the active log").
    /// No retries: a failure is the next call's to repair, from the receiver's answer.
    public func stream(vm: String, name: String, path: String, from: Int64?, to end: Int64,
                       compress: Bool) throws -> (held: Int64, sent: Int64) {
        guard ReceiverAPI.validName(name) else { throw ReplicaError("log name \(name) cannot cross to a receiver", kind: .nonRecoverable) }
        let upload = self.path(vm, "/uploads/" + ReceiverClient.segment(name))
        let start: Int64
        if let from {
            start = from
        } else {
            start = try client.json(.GET, upload, as: ReceiverAPI.Offset.self).offset
        }
        guard start < end else { return (start, 0) }
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        var sent: Int64 = 0
        // One request: 8 MiB, or 1 MiB when throttled.
        let held = try send(fd, to: upload, from: start, to: min(end, start + Int64(sendChunkBytes)), compress: compress, sent: &sent)
        return (held, sent)
    }
}
