import CLinux
import Foundation
import NIOCore
import NIOHTTP1
import ReplicaLog
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// A target store behind a receiver on another host (`replicafs://HOST[:PORT]`, `serve`):
/// every `TargetStore` call is one or a few requests of the protocol in docs/secondary-site.md,
/// made synchronously on the caller's thread. Data travels in chunks whose durable offset the
/// receiver acknowledges, so a cut connection resumes where the receiver's copy ends instead
/// of sending a whole log or disk again; `receive` deflates chunks on the wire when asked and
/// counts the bytes that crossed. Comparisons (verify, resync, rebase) send block digests the
/// other way and only the differing blocks.
public final class RemoteStore: TargetStore {
    public let location: String
    let client: ReceiverClient
    /// Called with each upload's wire bytes before it is sent (the bandwidth limit).
    let throttle: (@Sendable (Int) -> Void)?
    /// How long a transfer keeps retrying a dropped connection before it gives up (the
    /// replicator's own retry then resumes from the receiver's durable offset).
    let resumeSeconds: Double

    public init(client: ReceiverClient, throttle: (@Sendable (Int) -> Void)? = nil, resumeSeconds: Double = 30) {
        self.client = client
        location = client.location
        self.throttle = throttle
        self.resumeSeconds = resumeSeconds
    }

    func path(_ vm: String, _ rest: String = "") -> String { "/vms/" + ReceiverClient.segment(vm) + rest }

    // MARK: VMs and points

    public func hasVM(_ vm: String) -> Bool { (try? catalog(vm)) != nil }

    public func catalog(_ vm: String) throws -> StoreCatalog { try client.json(.GET, path(vm, "/catalog"), as: StoreCatalog.self) }

    public func recover(vm: String) throws { try client.call(.POST, path(vm, "/recover")) }

    public func delete(vm: String) throws { try client.call(.DELETE, path(vm)) }

    // MARK: initial copy

    public func initialCopy(_ vm: String) -> InitialCopy? {
        (try? client.json(.GET, path(vm, "/initial"), as: ReceiverAPI.Maybe<InitialCopy>.self))?.value
    }

    /// Sends each disk's data ranges (holes skipped) in chunks from the receiver's durable
    /// progress; a dropped connection resumes there. The receiver makes the copies the VM's
    /// base once every disk is whole.
    @discardableResult
    public func seed(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition],
                     progress: ((Int64) -> Void)?) throws -> Int64 {
        var begin = ReceiverAPI.SeedBegin(disks: [:])
        for name in sources.keys { begin.disks[name] = .init(chain: chains[name]?.chain ?? "", nextLSN: chains[name]?.nextLSN ?? 0) }
        let state = try resuming { try client.json(.POST, path(vm, "/seed/begin"), send: begin, as: InitialCopy.self) }
        var copied: Int64 = 0
        for disk in state.disks where !disk.done {
            guard let source = sources[disk.name] else { throw ReplicaError("disk \(disk.name) of VM \(vm) has no source") }
            let fd = try FileDescriptor.open(source.localPath, O_RDONLY)
            defer { fd.close() }
            let size = try fd.size()
            var durable = disk.copiedTo
            try transfer(what: "initial copy of \(disk.name)", resumeAt: {
                try self.client.json(.GET, self.path(vm, "/initial"), as: ReceiverAPI.Maybe<InitialCopy>.self)
                    .value?.disks.first { $0.name == disk.name }?.copiedTo ?? 0
            }) { restart in
                if let restart { durable = restart }
                var at = durable
                while at < size {
                    let start: Int64
                    do { start = try fd.lseek(at, whence: RFS_SEEK_DATA) } catch let e as SystemError where e.errno == ENXIO { break }
                    let end = min(size, (try? fd.lseek(start, whence: RFS_SEEK_HOLE)) ?? size)
                    var pos = start
                    while pos < end {
                        let n = Int(min(Int64(sendChunkBytes), end - pos))
                        let bytes = try Self.read(fd, count: n, offset: pos)
                        throttle?(bytes.count)
                        durable = try client.json(.PUT, path(vm, "/seed/" + ReceiverClient.segment(disk.name)),
                                                  query: ["offset": String(pos)], body: bytes,
                                                  as: ReceiverAPI.Offset.self).offset
                        pos += Int64(bytes.count)
                        copied += Int64(bytes.count)
                        progress?(Int64(bytes.count))
                    }
                    at = end
                }
            }
            try resuming {
                try client.call(.POST, path(vm, "/seed/" + ReceiverClient.segment(disk.name) + "/done"), query: ["size": String(size)])
            }
        }
        try resuming { try client.call(.POST, path(vm, "/seed-finish")) }
        return copied
    }

    // MARK: shipping and committing

    /// Uploads each log from the receiver's durable size of it (nothing when whole already),
    /// deflated per chunk with `compress`; returns the logs as given (the receiver commits
    /// them by name) and the bytes that crossed.
    public func receive(vm: String, logs: [String: [SourceFile]], compress: Bool) throws -> (logs: [String: [SourceFile]], bytesSent: Int64) {
        var sent: Int64 = 0
        for file in logs.values.joined() {
            guard ReceiverAPI.validName(file.name) else { throw ReplicaError("log name \(file.name) cannot cross to a receiver", kind: .nonRecoverable) }
            let fd = try FileDescriptor.open(file.localPath, O_RDONLY)
            defer { fd.close() }
            let size = try fd.size()
            let upload = path(vm, "/uploads/" + ReceiverClient.segment(file.name))
            let ask = { try self.client.json(.GET, upload, as: ReceiverAPI.Offset.self).offset }
            var durable = try resuming(ask)
            if durable > size {
                // Not this log's bytes (a stale upload): start over.
                try client.call(.DELETE, path(vm, "/uploads"))
                durable = 0
            }
            try transfer(what: "log \(file.name)", resumeAt: ask) { restart in
                if let restart { durable = restart }
                durable = try send(fd, to: upload, from: durable, to: size, compress: compress, sent: &sent)
            }
        }
        return (logs, sent)
    }

    /// Sends the bytes of `fd` from `from` to `end` as upload requests of `sendChunkBytes`;
    /// returns the upload's size the receiver answered last and counts the bytes that crossed.
    func send(_ fd: ReplicaSystem.FileDescriptor, to upload: String, from: Int64, to end: Int64, compress: Bool,
              sent: inout Int64) throws -> Int64 {
        var durable = from
        while durable < end {
            let n = Int(min(Int64(sendChunkBytes), end - durable))
            let raw = try Self.readBuffer(fd, count: n, offset: durable)
            guard raw.readableBytes == n else {
                throw ReplicaError("log \(fd.path) ends at \(durable + Int64(raw.readableBytes)), before byte \(end)", kind: .recoverable)
            }
            var headers: [(String, String)] = []
            var body = raw
            if compress {
                body = ByteBuffer(bytes: try raw.withUnsafeReadableBytes { try ZlibFrames.deflate($0) })
                headers = [(ReceiverAPI.encodingHeader, "zlib"), (ReceiverAPI.rawLengthHeader, String(raw.readableBytes))]
            }
            throttle?(body.readableBytes)
            sent += Int64(body.readableBytes)
            durable = try client.json(.PUT, upload, query: ["offset": String(durable)], headers: headers,
                                      buffer: body, as: ReceiverAPI.Offset.self).offset
        }
        return durable
    }

    public func discardReceived(vm: String) {
        // Unreachable: what the receiver staged stays, and the next transfer resumes it.
        _ = try? client.call(.DELETE, path(vm, "/uploads"))
    }

    /// Commits the uploaded logs on the receiver. An answer lost to a dropped connection is
    /// found again in the catalog (a point with this cut and time) before the commit is retried.
    @discardableResult
    public func commit(vm: String, logs: [String: [SourceFile]], consistency: RecoveryPoint.Consistency,
                       cut: UInt64, timeNanos: UInt64) throws -> RecoveryPoint {
        let request = ReceiverAPI.CommitRequest(logs: logs.mapValues { $0.map(\.name) }, consistency: consistency, cut: cut, timeNanos: timeNanos)
        var lost = false
        return try resuming {
            if lost, let point = try catalog(vm).points.last, point.cut == cut, point.timeNanos == timeNanos { return point }
            lost = true
            return try client.json(.POST, path(vm, "/commit"), send: request, as: RecoveryPoint.self)
        }
    }

    @discardableResult
    public func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64) throws -> [Int] {
        try client.json(.POST, path(vm, "/prune"), send: ReceiverAPI.PruneRequest(retentionSeconds: retentionSeconds, nowNanos: nowNanos), as: [Int].self)
    }

    // MARK: reading points

    public func openPoint(vm: String, disk: String, point: PointSelector?) throws -> any PointReader {
        var query: [String: String] = [:]
        if let point { query["point"] = ReceiverAPI.text(point) }
        let opened = try client.json(.GET, path(vm, "/disks/" + ReceiverClient.segment(disk) + "/point"), query: query, as: ReceiverAPI.OpenedPoint.self)
        return RemotePointReader(client: client, vm: vm, disk: disk, pointID: opened.pointID, size: opened.size)
    }

    /// Reads the point by range and writes `destination` (zero chunks left as holes).
    @discardableResult
    public func export(vm: String, point: PointSelector, disk: String, to destination: String) throws -> RecoveryPoint {
        let reader = try openPoint(vm: vm, disk: disk, point: point)
        guard let found = try catalog(vm).points.first(where: { $0.id == reader.pointID }) else {
            throw ReplicaError("recovery point \(reader.pointID) not found for VM \(vm)", code: .noSuchPoint)
        }
        try reader.copy(to: destination, chunkBytes: ReceiverAPI.chunkBytes)
        return found
    }

    /// Compares local block digests with the receiver's digests of the point.
    public func verify(vm: String, sources: [String: SourceFile], point: PointSelector?, blockSize: Int) throws -> [String: [Range<Int64>]] {
        var query = ["blockSize": String(blockSize)]
        if let point { query["point"] = ReceiverAPI.text(point) }
        var result: [String: [Range<Int64>]] = [:]
        for disk in try catalog(vm).disks.map(\.name) {
            guard let source = sources[disk] else { throw ReplicaError("disk \(disk) of VM \(vm) has no source") }
            let answer = try client.call(.GET, path(vm, "/disks/" + ReceiverClient.segment(disk) + "/digests"), query: query)
            let local = try BlockSync(blockSize: blockSize).checksums(of: source.localPath)
            let total = max(try source.size(), answer.size ?? 0)
            result[disk] = Self.differing(local, answer.body, blockSize: blockSize, total: total).map { $0.range }
        }
        return result
    }

    /// Differing blocks as merged byte ranges (and block runs), comparing `local` digests
    /// with the receiver's (32 bytes each); a block one side lacks differs.
    static func differing(_ local: [[UInt8]], _ remote: [UInt8], blockSize: Int, total: Int64) -> [(range: Range<Int64>, blocks: Range<Int>)] {
        let remoteCount = remote.count / 32
        let blocks = max(local.count, remoteCount)
        var runs: [(range: Range<Int64>, blocks: Range<Int>)] = []
        for i in 0..<blocks {
            let same = i < local.count && i < remoteCount && local[i].elementsEqual(remote[(i * 32)..<(i * 32 + 32)])
            guard !same else { continue }
            let start = Int64(i) * Int64(blockSize)
            let end = min(start + Int64(blockSize), total)
            guard end > start else { continue }
            if let last = runs.last, last.range.upperBound == start {
                runs[runs.count - 1] = (last.range.lowerBound..<end, last.blocks.lowerBound..<(i + 1))
            } else {
                runs.append((start..<end, i..<(i + 1)))
            }
        }
        return runs
    }

    // MARK: resync and rebase

    /// Has the receiver copy the latest point of each disk, patches the copies with the
    /// blocks whose digests differ from the sources; returns the bytes sent.
    func patchWorkCopies(_ vm: String, _ sources: [String: SourceFile], blockSize: Int,
                         progress: ((BlockSync.Progress) -> Void)?) throws -> Int64 {
        let disks = try catalog(vm).disks.map(\.name)
        for disk in disks where sources[disk] == nil { throw ReplicaError("VM \(vm): disk \(disk) has no source") }
        _ = try client.json(.POST, path(vm, "/work/prepare"), send: ReceiverAPI.WorkPrepare(disks: disks), as: ReceiverAPI.WorkSizes.self)
        var total: Int64 = 0
        for disk in disks { total += try sources[disk]!.size() }
        var done: Int64 = 0
        var sent: Int64 = 0
        for disk in disks {
            let source = sources[disk]!
            let work = path(vm, "/work/" + ReceiverClient.segment(disk))
            let size = try source.size()
            let remote = try client.call(.GET, work + "/digests", query: ["blockSize": String(blockSize)]).body
            let local = try BlockSync(blockSize: blockSize).checksums(of: source.localPath)
            let fd = try FileDescriptor.open(source.localPath, O_RDONLY)
            defer { fd.close() }
            for run in Self.differing(local, remote, blockSize: blockSize, total: size) {
                var at = run.range.lowerBound
                while at < run.range.upperBound {
                    let n = Int(min(Int64(sendChunkBytes), run.range.upperBound - at))
                    let bytes = try Self.read(fd, count: n, offset: at)
                    throttle?(bytes.count)
                    try resuming { try client.call(.PUT, work, query: ["offset": String(at)], body: bytes) }
                    at += Int64(bytes.count)
                    sent += Int64(bytes.count)
                    guard bytes.count == n else { break }
                }
            }
            try client.call(.POST, work + "/size", query: ["size": String(size)])
            done += size
            progress?(BlockSync.Progress(bytesDone: done, bytesTotal: total, bytesSent: sent))
        }
        return sent
    }

    @discardableResult
    public func resync(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition], reason: String?,
                       blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> ResyncReport {
        _ = try patchWorkCopies(vm, sources, blockSize: blockSize, progress: progress)
        let request = ReceiverAPI.ResyncRequest(chains: chains.mapValues { .init(chain: $0.chain, nextLSN: $0.nextLSN) },
                                                reason: reason, blockSize: blockSize)
        return try client.json(.POST, path(vm, "/resync"), send: request, as: ResyncReport.self)
    }

    public func resyncMark(_ vm: String) throws -> StoreCatalog.Resync? { try catalog(vm).resync }

    public func rebase(vm: String, sources: [String: SourceFile], blockSize: Int) throws -> (RecoveryPoint, Int64) {
        _ = try patchWorkCopies(vm, sources, blockSize: blockSize, progress: nil)
        let result = try client.json(.POST, path(vm, "/rebase"), send: ReceiverAPI.RebaseRequest(blockSize: blockSize), as: ReceiverAPI.RebaseResult.self)
        return (result.point, result.bytes)
    }

    // MARK: failover

    public func failoverState(_ vm: String) -> FailoverState? {
        (try? client.json(.GET, path(vm, "/failover"), as: ReceiverAPI.Maybe<FailoverState>.self))?.value
    }

    public func failedOverVMs() -> [String] { (try? client.json(.GET, "/failovers", as: [String].self)) ?? [] }

    public func beginFailover(vm: String, point: PointSelector, kind: FailoverState.Kind, mountpoint: String,
                              sourceDisksDir: String?, workDirectory: String?) throws -> FailoverState {
        guard let workDirectory else {
            throw ReplicaError("VM \(vm): the store is on another host: name a working directory on this one (--work-dir)", code: .badRequest)
        }
        let request = ReceiverAPI.FailoverRequest(point: ReceiverAPI.text(point), kind: kind, mountpoint: mountpoint,
                                                  sourceDisksDir: sourceDisksDir, workDirectory: workDirectory)
        return try client.json(.POST, path(vm, "/failover"), send: request, as: FailoverState.self)
    }

    public func saveFailover(_ state: FailoverState) throws {
        try client.call(.PUT, path(state.vm, "/failover"), body: Array(try JSONEncoder().encode(state)), contentType: "application/json")
    }

    public func discardFailover(vm: String) throws { try client.call(.DELETE, path(vm, "/failover")) }

    @discardableResult
    public func commitFailover(vm: String) throws -> FailoverState {
        try client.json(.POST, path(vm, "/failover/commit"), as: FailoverState.self)
    }

    /// Nil: the store is elsewhere, the caller names a directory on this host.
    public func localFailoverDirectory(vm: String) -> String? { nil }

    // MARK: metadata

    public func metadata(vm: String) throws -> VMMetadata? {
        try client.json(.GET, path(vm, "/metadata"), as: ReceiverAPI.Maybe<VMMetadata>.self).value
    }

    public func saveMetadata(_ metadata: VMMetadata) throws {
        try client.call(.PUT, path(metadata.vm, "/metadata"), body: Array(try JSONEncoder().encode(metadata)), contentType: "application/json")
    }

    // MARK: transfers

    /// Runs `body`, retrying a dropped connection for `resumeSeconds` (an answer of the
    /// receiver, even a recoverable error, is thrown at once).
    @discardableResult
    func resuming<T>(_ body: () throws -> T) throws -> T {
        try client.resuming(for: resumeSeconds, body)
    }

    /// Runs a chunked transfer; after a dropped connection asks the receiver for its durable
    /// offset (`resumeAt`) and runs `body` again from there (passed to it), for `resumeSeconds`.
    func transfer(what: String, resumeAt: @escaping () throws -> Int64, _ body: (Int64?) throws -> Void) throws {
        try client.transfer(what: what, for: resumeSeconds, resumeAt: resumeAt, body)
    }

    /// Up to `count` bytes at `offset` (fewer at the end of the file), read straight into a
    /// buffer the HTTP client sends as it is.
    static func readBuffer(_ fd: ReplicaSystem.FileDescriptor, count: Int, offset: Int64) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        // pread reads until `count` or the end of the file.
        _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { buf in
            try fd.pread(into: buf.baseAddress!, count: count, offset: offset)
        }
        return buffer
    }

    static func read(_ fd: ReplicaSystem.FileDescriptor, count: Int, offset: Int64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let done = try bytes.withUnsafeMutableBytes { try fd.pread(into: $0.baseAddress!, count: count, offset: offset) }
        bytes.removeSubrange(done...)
        return bytes
    }
}
