import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HTTPTypes
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ReplicaLog
import ReplicaStore
import ReplicaSystem

/// `replicafs serve`: the HTTP(S) receiver in front of a local `DirectoryStore` (routes and
/// bodies: docs/secondary-site.md). Hummingbird 2 serves; every store call runs on a thread
/// pool of its own (file I/O and fsync never block the event loops); a VM's mutating requests
/// run one at a time (`ReceiverStore.exclusive`). With `tls` the sender must present a
/// certificate the configuration trusts, and `peerName` names it: each VM is bound to the
/// first sender that wrote it, and any other sender is refused (403, logged, nothing written).
public final class ReceiverServer: Sendable {
    public typealias PeerName = @Sendable (any Channel) async -> String?

    public let receiver: ReceiverStore
    public let host: String
    public let port: Int
    let tls: TLSConfiguration?
    let peerName: PeerName

    /// `tls` nil serves plain HTTP (tests on loopback only; `serve` always passes its PKI's).
    public convenience init(store: DirectoryStore, host: String, port: Int, tls: TLSConfiguration?,
                            peerName: @escaping PeerName = { _ in nil }) throws {
        self.init(receiver: try ReceiverStore(store: store), host: host, port: port, tls: tls, peerName: peerName)
    }

    /// A receiver in front of any store (the encrypted one of `serve --encrypt-key-file`).
    public init(receiver: ReceiverStore, host: String, port: Int, tls: TLSConfiguration?,
                peerName: @escaping PeerName = { _ in nil }) {
        self.receiver = receiver
        self.host = host
        self.port = port
        self.tls = tls
        self.peerName = peerName
    }

    /// Serves until the task is cancelled (or SIGTERM/SIGINT with `signals`); `onListening`
    /// gets the bound port (useful with port 0).
    public func run(signals: Bool = false, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let pool = NIOThreadPool(numberOfThreads: 8)
        pool.start()
        do {
            try await serve(pool, signals: signals, onListening: onListening)
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try? await pool.shutdownGracefully()
    }

    private func serve(_ pool: NIOThreadPool, signals: Bool, onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let router = Router(context: ReceiverContext.self)
        routes(router, pool)
        try await Self.runApplication(router: router, host: host, port: port, tls: tls, label: "replicafs.receiver",
                                      signals: signals, onListening: onListening)
    }

    // MARK: routes

    /// What a route's work gets: the VM, the path parameters, the query, the request body
    /// (collected, inflated when the sender compressed it) and the sender's name.
    struct Call: Sendable {
        var vm: String
        var parameters: [String: String]
        var query: [String: String]
        /// The body as received (or inflated): data routes write straight from it, with no copy
        /// of an 8 MiB chunk into an array first.
        var data: ByteBuffer

        func name(_ key: String) throws -> String {
            guard let value = parameters[key], ReceiverAPI.validName(value) else {
                throw ReplicaError("bad \(key) name", code: .badRequest)
            }
            return value
        }

        func int(_ key: String) throws -> Int64 {
            guard let text = query[key], let value = Int64(text), value >= 0 else {
                throw ReplicaError("query parameter \(key) missing or not a count", code: .badRequest)
            }
            return value
        }

        func point(_ key: String = "point") throws -> PointSelector? {
            guard let text = query[key] else { return nil }
            do { return try PointSelector(text) } catch let e as ReplicaError { throw ReplicaError(e.description, code: .badRequest) }
        }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            do {
                return try JSONDecoder().decode(type, from: Data(data.readableBytesView))
            } catch {
                throw ReplicaError("malformed \(type) request body", code: .badRequest)
            }
        }
    }

    /// A route's answer: JSON, raw bytes or nothing.
    enum Reply: Sendable {
        case json(Data)
        case bytes([UInt8], size: Int64?)
        case empty

        static func encode<T: Encodable>(_ value: T) throws -> Reply { .json(try JSONEncoder().encode(value)) }

        var response: Response {
            switch self {
            case .json(let data):
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
            case .bytes(let bytes, let size):
                var headers: HTTPFields = [.contentType: "application/octet-stream"]
                if let size { headers[HTTPField.Name("replicafs-size")!] = String(size) }
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            case .empty:
                return Response(status: .noContent)
            }
        }
    }

    /// Adds `method path` under /v1/vms/:vm: the body (up to `limit` bytes, 0: none) is read,
    /// the sender checked against the VM's binding (bound first when `mutating`), then `work`
    /// runs on the pool. Errors answer with their status and a JSON `ErrorBody`.
    func vmRoute(_ router: Router<ReceiverContext>, _ pool: NIOThreadPool, _ method: HTTPRequest.Method, _ path: String,
                 mutating: Bool, limit: Int = 0, _ work: @escaping @Sendable (ReceiverStore, Call) throws -> Reply) {
        router.on(RouterPath(stringLiteral: ReceiverAPI.prefix + "/vms/:vm" + path), method: method) { request, context -> Response in
            await self.collected(request, context, pool, method, path, mutating: mutating, limit: limit, work)
        }
    }

    /// A `/vms/:vm` request's VM, percent-decoded path parameters and query, with `data` as its body.
    static func call(_ request: Request, _ context: ReceiverContext, data: ByteBuffer = ByteBuffer()) throws -> Call {
        var parameters: [String: String] = [:]
        for (key, value) in context.parameters { parameters[String(key)] = String(value).removingPercentEncoding ?? String(value) }
        guard let vm = parameters["vm"], ReceiverAPI.validName(vm) else { throw ReplicaError("bad VM name", code: .badRequest) }
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value).removingPercentEncoding ?? String(value) }
        return Call(vm: vm, parameters: parameters, query: query, data: data)
    }

    /// Checks the sender against the VM's binding (bound first when `mutating`), logging a refusal.
    static func authorize(_ receiver: ReceiverStore, vm: String, peer: String?, mutating: Bool,
                          _ method: HTTPRequest.Method, _ path: String) throws {
        do {
            try receiver.authorize(vm: vm, peer: peer, bind: mutating)
        } catch let refusal as Refusal {
            DaemonLog.logger.error("receiver: refused \(method) \(path) from \(peer ?? "?"): \(refusal.description)")
            throw refusal
        }
    }

    /// Answers a `vmRoute` request: the body collected (and inflated), then `work` on the pool.
    func collected(_ request: Request, _ context: ReceiverContext, _ pool: NIOThreadPool, _ method: HTTPRequest.Method,
                   _ path: String, mutating: Bool, limit: Int,
                   _ work: @escaping @Sendable (ReceiverStore, Call) throws -> Reply) async -> Response {
        let receiver = self.receiver
        var request = request
        do {
            var call = try Self.call(request, context)
            var body = ByteBuffer()
            if limit > 0 {
                body = try await request.collectBody(upTo: limit)
                receiver.stats.request(bodyBytes: body.readableBytes)
                if request.headers[HTTPField.Name(ReceiverAPI.encodingHeader)!] == "zlib" {
                    guard let raw = request.headers[HTTPField.Name(ReceiverAPI.rawLengthHeader)!].flatMap(Int.init) else {
                        throw ReplicaError("compressed body without its raw length", code: .badRequest)
                    }
                    body = ByteBuffer(bytes: try body.withUnsafeReadableBytes { try ZlibFrames.inflate($0, rawLength: raw, limit: ReceiverAPI.maxChunkBytes) })
                } else if let encoding = request.headers[HTTPField.Name(ReceiverAPI.encodingHeader)!] {
                    throw ReplicaError("unknown body encoding \(encoding)", code: .badRequest)
                }
            }
            if limit == 0 { receiver.stats.request(bodyBytes: 0) }
            let peer = await peerName(context.channel)
            call.data = body
            let reply = try await pool.runIfActive { [call] in
                try Self.authorize(receiver, vm: call.vm, peer: peer, mutating: mutating, method, path)
                return try work(receiver, call)
            }
            return reply.response
        } catch {
            return Self.errorResponse(error)
        }
    }

    static func errorResponse(_ error: Error) -> Response {
        let status: Int
        let body: ReceiverAPI.ErrorBody
        switch error {
        case let e as ReplicaError:
            status = ReceiverAPI.status(of: e)
            body = .init(e)
        case let e as Refusal:
            status = 403
            body = .init(ReplicaError(e.description, kind: .nonRecoverable))
        case let e as SystemError:
            status = [ENOSPC, EDQUOT, EIO, EAGAIN, EBUSY, ENOMEM].contains(e.errno) ? 503 : 500
            var b = ReceiverAPI.ErrorBody(ReplicaError("receiver: \(e.description)", kind: status == 503 ? .recoverable : .nonRecoverable))
            b.errno = e.errno
            body = b
        case let e as NIOTooManyBytesError:
            status = 413
            body = .init(ReplicaError("receiver: request body over its limit of \(e.maxBytes ?? 0) bytes", kind: .nonRecoverable, code: .badRequest))
        case let e as HTTPError:
            status = Int(e.status.code)
            body = .init(ReplicaError("receiver: \(e.body ?? e.status.reasonPhrase)", kind: .nonRecoverable, code: .badRequest))
        default:
            status = 500
            body = .init(ReplicaError("receiver: \(error)", kind: .recoverable))
        }
        let data = (try? JSONEncoder().encode(body)) ?? Data()
        return Response(status: .init(code: status), headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func routes(_ router: Router<ReceiverContext>, _ pool: NIOThreadPool) {
        let json = ReceiverAPI.maxJSONBytes
        let chunk = ReceiverAPI.maxChunkBytes
        // Requests outside the protocol get a JSON 404 too.
        let receiver = self.receiver
        router.get(RouterPath(stringLiteral: ReceiverAPI.prefix + "/failovers")) { _, _ -> Response in
            do {
                return try await pool.runIfActive { try Reply.encode(receiver.store.failedOverVMs()) }.response
            } catch {
                return Self.errorResponse(error)
            }
        }
        // What the receiver took in since it started (any sender of the site may ask).
        router.get(RouterPath(stringLiteral: ReceiverAPI.prefix + "/stats")) { _, _ -> Response in
            do { return try Reply.encode(receiver.stats.snapshot).response } catch { return Self.errorResponse(error) }
        }
        vmRoute(router, pool, .get, "/catalog", mutating: false) { r, c in try .encode(try r.store.catalog(c.vm)) }
        vmRoute(router, pool, .post, "/recover", mutating: true) { r, c in try r.store.recover(vm: c.vm); return .empty }
        vmRoute(router, pool, .delete, "", mutating: true) { r, c in try r.delete(vm: c.vm); return .empty }
        // Initial copy.
        vmRoute(router, pool, .get, "/initial", mutating: false) { r, c in try .encode(ReceiverAPI.Maybe(r.initialCopy(vm: c.vm))) }
        vmRoute(router, pool, .post, "/seed/begin", mutating: true, limit: json) { r, c in
            try .encode(try r.seedBegin(vm: c.vm, try c.decode(ReceiverAPI.SeedBegin.self)))
        }
        vmRoute(router, pool, .put, "/seed/:disk", mutating: true, limit: chunk) { r, c in
            let at = try c.data.withUnsafeReadableBytes { try r.seedWrite(vm: c.vm, disk: try c.name("disk"), offset: try c.int("offset"), bytes: $0) }
            return try .encode(ReceiverAPI.Offset(offset: at))
        }
        vmRoute(router, pool, .post, "/seed/:disk/done", mutating: true) { r, c in
            try .encode(ReceiverAPI.Offset(offset: try r.seedDone(vm: c.vm, disk: try c.name("disk"), size: try c.int("size"))))
        }
        vmRoute(router, pool, .post, "/seed-finish", mutating: true) { r, c in
            try .encode(ReceiverAPI.Offset(offset: try r.seedFinish(vm: c.vm)))
        }
        // Shipped logs.
        vmRoute(router, pool, .get, "/uploads/:name", mutating: false) { r, c in
            try .encode(ReceiverAPI.Offset(offset: try r.uploadSize(vm: c.vm, name: try c.name("name"))))
        }
        uploadRoute(router, pool, limit: chunk)
        vmRoute(router, pool, .delete, "/uploads", mutating: true) { r, c in try r.discardUploads(vm: c.vm); return .empty }
        vmRoute(router, pool, .post, "/commit", mutating: true, limit: json) { r, c in
            try .encode(try r.commit(vm: c.vm, try c.decode(ReceiverAPI.CommitRequest.self)))
        }
        vmRoute(router, pool, .post, "/prune", mutating: true, limit: json) { r, c in
            let request = try c.decode(ReceiverAPI.PruneRequest.self)
            return try .encode(try r.store.prune(vm: c.vm, retentionSeconds: request.retentionSeconds, nowNanos: request.nowNanos))
        }
        // Reading points.
        vmRoute(router, pool, .get, "/disks/:disk/point", mutating: false) { r, c in
            try .encode(try r.openPoint(vm: c.vm, disk: try c.name("disk"), point: try c.point()))
        }
        vmRoute(router, pool, .get, "/disks/:disk/data", mutating: false) { r, c in
            guard case .id(let id)? = try c.point() else { throw ReplicaError("a read names its point by id", code: .badRequest) }
            let count = try c.int("count")
            guard count <= ReceiverAPI.maxReadBytes else { throw ReplicaError("read of \(count) bytes exceeds \(ReceiverAPI.maxReadBytes)", code: .badRequest) }
            var bytes = [UInt8](repeating: 0, count: Int(count))
            try bytes.withUnsafeMutableBytes { buf in
                if let base = buf.baseAddress { try r.read(vm: c.vm, disk: try c.name("disk"), point: id, offset: try c.int("offset"), count: Int(count), into: base) }
            }
            return .bytes(bytes, size: nil)
        }
        vmRoute(router, pool, .get, "/disks/:disk/digests", mutating: false) { r, c in
            let (size, digests) = try r.pointDigests(vm: c.vm, disk: try c.name("disk"), point: try c.point(), blockSize: try Self.blockSize(c))
            return .bytes(digests, size: size)
        }
        // Resync and rebase.
        vmRoute(router, pool, .post, "/work/prepare", mutating: true, limit: json) { r, c in
            try .encode(ReceiverAPI.WorkSizes(sizes: try r.workPrepare(vm: c.vm, disks: try c.decode(ReceiverAPI.WorkPrepare.self).disks)))
        }
        vmRoute(router, pool, .get, "/work/:disk/digests", mutating: true) { r, c in
            .bytes(try r.workDigests(vm: c.vm, disk: try c.name("disk"), blockSize: try Self.blockSize(c)), size: nil)
        }
        vmRoute(router, pool, .put, "/work/:disk", mutating: true, limit: chunk) { r, c in
            try c.data.withUnsafeReadableBytes { try r.workWrite(vm: c.vm, disk: try c.name("disk"), offset: try c.int("offset"), bytes: $0) }
            return .empty
        }
        vmRoute(router, pool, .post, "/work/:disk/size", mutating: true) { r, c in
            try r.workSize(vm: c.vm, disk: try c.name("disk"), size: try c.int("size"))
            return .empty
        }
        vmRoute(router, pool, .post, "/resync", mutating: true, limit: json) { r, c in
            try .encode(try r.resync(vm: c.vm, try c.decode(ReceiverAPI.ResyncRequest.self)))
        }
        vmRoute(router, pool, .post, "/rebase", mutating: true, limit: json) { r, c in
            try .encode(try r.rebase(vm: c.vm, try c.decode(ReceiverAPI.RebaseRequest.self)))
        }
        // Failover bookkeeping (the failover's own files live on the failing-over host).
        vmRoute(router, pool, .get, "/failover", mutating: false) { r, c in try .encode(ReceiverAPI.Maybe(r.store.failoverState(c.vm))) }
        vmRoute(router, pool, .post, "/failover", mutating: true, limit: json) { r, c in
            let q = try c.decode(ReceiverAPI.FailoverRequest.self)
            let point: PointSelector
            do { point = try PointSelector(q.point) } catch { throw ReplicaError("bad point \(q.point)", code: .badRequest) }
            return try .encode(try r.store.beginFailover(vm: c.vm, point: point, kind: q.kind, mountpoint: q.mountpoint,
                                                          sourceDisksDir: q.sourceDisksDir, workDirectory: q.workDirectory))
        }
        vmRoute(router, pool, .put, "/failover", mutating: true, limit: json) { r, c in
            let state = try c.decode(FailoverState.self)
            guard state.vm == c.vm else { throw ReplicaError("failover state of VM \(state.vm) sent for VM \(c.vm)", code: .badRequest) }
            try r.store.saveFailover(state)
            return .empty
        }
        vmRoute(router, pool, .delete, "/failover", mutating: true) { r, c in try r.store.discardFailover(vm: c.vm); return .empty }
        vmRoute(router, pool, .post, "/failover/commit", mutating: true) { r, c in try .encode(try r.store.commitFailover(vm: c.vm)) }
        // Metadata.
        vmRoute(router, pool, .get, "/metadata", mutating: false) { r, c in try .encode(ReceiverAPI.Maybe(try r.store.metadata(vm: c.vm))) }
        vmRoute(router, pool, .put, "/metadata", mutating: true, limit: json) { r, c in
            let metadata = try c.decode(VMMetadata.self)
            guard metadata.vm == c.vm else { throw ReplicaError("metadata of VM \(metadata.vm) sent for VM \(c.vm)", code: .badRequest) }
            try r.store.saveMetadata(metadata)
            return .empty
        }
    }

    static func blockSize(_ c: Call) throws -> Int {
        let size = try c.int("blockSize")
        guard size > 0, size <= 64 << 20 else { throw ReplicaError("bad block size \(size)", code: .badRequest) }
        return Int(size)
    }
}
