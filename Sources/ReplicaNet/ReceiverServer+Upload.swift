import Hummingbird
import HTTPTypes
import NIOCore
import NIOPosix
import ReplicaStore
import ReplicaSystem

extension ReceiverServer {
    /// Bytes gathered from the request body before each write into the upload.
    static let uploadWriteBytes = 1 << 20

    /// `PUT /vms/:vm/uploads/:name?offset=N`: a log chunk appended to its upload as it arrives,
    /// a write per MiB, so the answer follows the last byte. Collecting the whole 8 MiB chunk
    /// first and then writing it kept the sender waiting for the write (about 18 ms a chunk
    /// under load, docs/benchmarks.md) and allocated a fresh 8 MiB buffer for every request.
    /// The sender is authorized before a byte is written. Each write goes through
    /// `ReceiverStore.upload` (the VM's lock, the offset checked against the upload's size),
    /// so a body cut off leaves a prefix the sender resumes from, and an upload committed or
    /// discarded meanwhile refuses the rest. A compressed body (inflated whole) and an
    /// encrypted store (sealed in chunks) take the collected path.
    func uploadRoute(_ router: Router<ReceiverContext>, _ pool: NIOThreadPool, limit: Int) {
        let path = "/uploads/:name"
        let receiver = self.receiver
        let work: @Sendable (ReceiverStore, Call) throws -> Reply = { r, c in
            let at = try c.data.withUnsafeReadableBytes { try r.upload(vm: c.vm, name: try c.name("name"), offset: try c.int("offset"), bytes: $0) }
            return try .encode(ReceiverAPI.Offset(offset: at))
        }
        router.on(RouterPath(stringLiteral: ReceiverAPI.prefix + "/vms/:vm" + path), method: .put) { request, context -> Response in
            if receiver.cipher != nil || request.headers[HTTPField.Name(ReceiverAPI.encodingHeader)!] != nil {
                return await self.collected(request, context, pool, .put, path, mutating: true, limit: limit, work)
            }
            do {
                let call = try Self.call(request, context)
                let (vm, name, start) = (call.vm, try call.name("name"), try call.int("offset"))
                // A body declared too long is refused before a byte is written.
                if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
                    receiver.stats.request(bodyBytes: 0)
                    throw ReplicaError("receiver: request body over its limit of \(limit) bytes", kind: .nonRecoverable, code: .badRequest)
                }
                // Counted however the body ends: a body cut off has had its bytes written too.
                var received = 0
                defer { receiver.stats.request(bodyBytes: received) }
                let peer = await self.peerName(context.channel)
                try await pool.runIfActive { try Self.authorize(receiver, vm: vm, peer: peer, mutating: true, .put, path) }
                var offset = start
                // The first write checks the offset against what the upload holds.
                var held = start
                var pending = ByteBuffer()
                // Writes what has gathered; the upload's size the store answered.
                func write(_ bytes: ByteBuffer, at: Int64) async throws -> Int64 {
                    try await pool.runIfActive { try bytes.withUnsafeReadableBytes { try receiver.upload(vm: vm, name: name, offset: at, bytes: $0) } }
                }
                for try await part in request.body {
                    received += part.readableBytes
                    guard received <= limit else {
                        throw ReplicaError("receiver: request body over its limit of \(limit) bytes", kind: .nonRecoverable, code: .badRequest)
                    }
                    if pending.readableBytes == 0 && part.readableBytes >= Self.uploadWriteBytes {
                        held = try await write(part, at: offset)
                        offset += Int64(part.readableBytes)
                        continue
                    }
                    var part = part
                    pending.writeBuffer(&part)
                    if pending.readableBytes >= Self.uploadWriteBytes {
                        held = try await write(pending, at: offset)
                        offset += Int64(pending.readableBytes)
                        pending.clear()
                    }
                }
                if pending.readableBytes > 0 || received == 0 {
                    held = try await write(pending, at: offset)
                }
                return try Reply.encode(ReceiverAPI.Offset(offset: held)).response
            } catch {
                return Self.errorResponse(error)
            }
        }
    }
}
