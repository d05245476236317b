import Crypto
import Foundation
import NIOHTTP1
import ReplicaLog
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The original site's disks directory on another host, served by `replicafs serve --disks-dir`
/// (`SiteServer`), over the receiver's transport (mutual TLS, one request at a time). The block
/// comparison hashes the local source here and fetches the far side's digests, so only the
/// differing blocks travel; reverse logs are uploaded, then replayed there. A dropped
/// connection is retried for `resumeSeconds`: a reverse log's upload resumes from the site's
/// durable size of it, a disk write (idempotent, at its offset) is sent again.
public struct RemoteOriginalSite: OriginalSite {
    public let client: ReceiverClient
    public var location: String { client.location }
    public var localDirectory: String? { nil }
    /// How long a transfer keeps retrying a dropped connection before it fails (recoverable).
    public let resumeSeconds: Double

    public init(client: ReceiverClient, resumeSeconds: Double = 30) {
        self.client = client
        self.resumeSeconds = resumeSeconds
    }

    /// `client.call`, retried while the connection drops (for idempotent requests).
    @discardableResult
    func call(_ method: HTTPMethod, _ path: String, query: [String: String] = [:], body: [UInt8]? = nil) throws -> ReceiverClient.Answer {
        try client.resuming(for: resumeSeconds) { try client.call(method, path, query: query, body: body) }
    }

    /// Opens `replicafs://HOST[:PORT]` with mutual TLS from the PKI directory of `options`.
    public init(url: String, options: TargetOptions) throws {
        let address = try ReceiverAddress(url: url)
        let tls = try PKIConfigurationCache.clientTLSConfiguration(PKIDirectory(path: options.pki))
        let location = ReplicaNet.scheme + "://" + (address.host.contains(":") ? "[\(address.host)]" : address.host) + ":\(address.port)"
        self.init(client: ReceiverClient(host: address.host, port: address.port, tls: tls,
                                         tlsFailure: { TLSFailure.replicaError($0, peer: location) }))
    }

    static func disk(_ name: String) -> String { "/site/disks/" + ReceiverClient.segment(name) }

    public func sync(disk: String, from source: String, blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> BlockSync.Report {
        let started = Date()
        let sync = BlockSync(blockSize: blockSize)
        let answer = try call(.GET, Self.disk(disk) + "/digests", query: ["blockSize": String(blockSize)])
        let remoteSize = answer.size ?? 0
        let local = try sync.checksums(of: source)
        let fd = try FileDescriptor.open(source, O_RDONLY)
        defer { fd.close() }
        let size = try fd.size()
        if remoteSize != size { try call(.POST, Self.disk(disk) + "/size", query: ["size": String(size)]) }
        // Blocks past the far side's old end read as zeros there once it is resized.
        let remoteCount = answer.body.count / 32
        var differing: [Int] = []
        for (i, digest) in local.enumerated() {
            if i < remoteCount {
                if !answer.body[(i * 32)..<(i * 32 + 32)].elementsEqual(digest) { differing.append(i) }
            } else {
                let n = Int(min(Int64(blockSize), size - Int64(i) * Int64(blockSize)))
                if !SHA256.hash(data: [UInt8](repeating: 0, count: n)).elementsEqual(digest) { differing.append(i) }
            }
        }
        var sent: Int64 = 0
        let chunkBlocks = max(1, ReceiverAPI.maxChunkBytes / 2 / blockSize)
        var i = 0
        while i < differing.count {
            // A run of consecutive differing blocks, at most one chunk.
            var j = i + 1
            while j < differing.count, differing[j] == differing[j - 1] + 1, j - i < chunkBlocks { j += 1 }
            let offset = Int64(differing[i]) * Int64(blockSize)
            let count = Int(min(Int64(j - i) * Int64(blockSize), size - offset))
            var bytes = [UInt8](repeating: 0, count: count)
            let got = try bytes.withUnsafeMutableBytes { try fd.pread(into: $0.baseAddress!, count: count, offset: offset) }
            try call(.PUT, Self.disk(disk) + "/data", query: ["offset": String(offset)], body: Array(bytes[0..<got]))
            sent += Int64(got)
            progress?(BlockSync.Progress(bytesDone: offset + Int64(got), bytesTotal: size, bytesSent: sent))
            i = j
        }
        try call(.POST, Self.disk(disk) + "/sync")
        progress?(BlockSync.Progress(bytesDone: size, bytesTotal: size, bytesSent: sent))
        return BlockSync.Report(remote: blockSize, blocks: local.count, differingBlocks: differing.count,
                                bytesCompared: size + remoteSize, bytesSent: sent,
                                seconds: Date().timeIntervalSince(started), sourceSize: size)
    }

    public func copy(disk: String, from source: String, progress: ((Int64, Int64) -> Void)?) throws -> Int64 {
        let fd = try FileDescriptor.open(source, O_RDONLY)
        defer { fd.close() }
        let size = try fd.size()
        try call(.POST, Self.disk(disk) + "/size", query: ["size": "0"])
        try call(.POST, Self.disk(disk) + "/size", query: ["size": String(size)])
        let chunk = ReceiverAPI.maxChunkBytes / 2
        var at: Int64 = 0
        while at < size {
            let count = Int(min(Int64(chunk), size - at))
            var bytes = [UInt8](repeating: 0, count: count)
            let got = try bytes.withUnsafeMutableBytes { try fd.pread(into: $0.baseAddress!, count: count, offset: at) }
            guard got > 0 else { break }
            try call(.PUT, Self.disk(disk) + "/data", query: ["offset": String(at)], body: Array(bytes[0..<got]))
            at += Int64(got)
            progress?(Int64(got), at)
        }
        try call(.POST, Self.disk(disk) + "/sync")
        return at
    }

    public func apply(disk: String, logs: [LogScan]) throws -> Int64 {
        var names: [String] = []
        for scan in logs {
            let name = (scan.path as NSString).lastPathComponent
            let fd = try FileDescriptor.open(scan.path, O_RDONLY)
            defer { fd.close() }
            let size = try fd.size()
            let upload = "/site/logs/" + ReceiverClient.segment(name)
            let ask = { try client.json(.GET, upload, as: ReceiverAPI.Offset.self).offset }
            // A log whose upload was cut continues from the site's durable size of it (a sealed
            // log never changes, and the replay checks every record); one larger is not this
            // log's bytes and starts over (offset 0 truncates it there).
            var durable = try client.resuming(for: resumeSeconds, ask)
            if durable > size || size == 0 { durable = 0 }
            try client.transfer(what: "reverse log \(name)", for: resumeSeconds, resumeAt: ask) { restart in
                if let restart { durable = restart > size ? 0 : restart }
                repeat {
                    let count = Int(min(Int64(ReceiverAPI.maxChunkBytes / 2), size - durable))
                    let bytes = try RemoteStore.read(fd, count: count, offset: durable)
                    durable = try client.json(.PUT, upload, query: ["offset": String(durable)], body: bytes, as: ReceiverAPI.Offset.self).offset
                    if bytes.isEmpty { break }
                } while durable < size
            }
            names.append(name)
        }
        return try client.json(.POST, Self.disk(disk) + "/apply", send: names, as: ReceiverAPI.Offset.self).offset
    }

    public func removeSourceLogs(of disks: [String]) throws {
        for disk in disks { try call(.DELETE, Self.disk(disk) + "/source-logs") }
    }

    public func size(of disk: String) throws -> Int64 {
        try client.resuming(for: resumeSeconds) { try client.json(.GET, Self.disk(disk), as: ReceiverAPI.Offset.self).offset }
    }
}
