import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ReplicaEngine
import ReplicaSource
import ReplicaStore
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The mount daemon's Prometheus endpoint (`replicafs mount --metrics HOST:PORT`): `GET
/// /metrics` answers the text exposition format with, per protected VM, the lag, the bytes
/// pending at the source, the recovery points at the target, the last commit's time, the
/// health, the consecutive failed attempts and the bytes shipped. Values are read from the
/// replicator at each scrape, so they are never staler than the scrape. HTTP is swift-nio's
/// (NIOHTTP1) on one event-loop thread of its own, apart from the FUSE threads.
public final class MetricsServer: Sendable {
    /// The metric handles of one VM, registered once and unregistered when the VM goes.
    struct VMMetrics: Sendable {
        let lag, pending, points, lastCommit, health, retries: Gauge
        let shipped, sent: Counter
        var shippedSoFar: Int64 = 0, sentSoFar: Int64 = 0
    }

    public let address: String
    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let registry = PrometheusCollectorRegistry()
    /// Set by `serve`: where the values come from.
    let source = Mutex<Replicator?>(nil)
    let vms = Mutex<[String: VMMetrics]>([:])

    /// Checks `HOST:PORT` (an IPv6 host in brackets) and returns its parts.
    public static func parse(_ address: String) throws -> (host: String, port: Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw ReplicaError("bad --metrics address '\(address)': use HOST:PORT, e.g. 127.0.0.1:9464")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ReplicaError("bad --metrics address '\(address)': name the host, e.g. 127.0.0.1:\(port)") }
        return (host, port)
    }

    /// Binds the address now, so that an address in use stops the mount before it starts.
    public init(address: String) throws {
        let (host, port) = try Self.parse(address)
        self.address = address
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let answer = Self.answer
        let box = Box()
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 16)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler { method, uri in answer(box.server, method, uri) })
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw ReplicaError("cannot serve metrics on \(address): \(Self.describe(error))")
        }
        box.server = self
    }

    /// Serves the replicator's VMs from now on (before that, scrapes get 503).
    public func serve(_ replicator: Replicator) { source.withLock { $0 = replicator } }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// What the handler answers: status, content type, body.
    static let answer: @Sendable (MetricsServer?, HTTPMethod, String) -> (HTTPResponseStatus, String, String) = { server, method, uri in
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        guard path == "/metrics" else { return (.notFound, "text/plain", "not found: try /metrics\n") }
        guard method == .GET || method == .HEAD else { return (.methodNotAllowed, "text/plain", "GET /metrics\n") }
        guard let server, let body = server.render() else { return (.serviceUnavailable, "text/plain", "the mount is starting\n") }
        return (.ok, "text/plain; version=0.0.4; charset=utf-8", body)
    }

    /// The exposition text, with every VM's values read now; nil before `serve`.
    func render() -> String? {
        guard let replicator = source.withLock({ $0 }) else { return nil }
        let states = replicator.vmStates
        let policies = Dictionary(ProtectedVM.all(disksDir: replicator.disks.directory).map { ($0.name, $0) }) { a, _ in a }
        // Points are counted at the target at each scrape (one listing per VM).
        var points: [String: Int] = [:]
        for s in states {
            if let vm = policies[s.vm], let store = try? openTargetStore(vm.target, options: vm.storeOptions),
               store.hasVM(vm.name), let list = try? store.points(vm.name) {
                points[s.vm] = list.count
            }
        }
        vms.withLock { table in
            for gone in Set(table.keys).subtracting(states.map(\.vm)) {
                let m = table.removeValue(forKey: gone)!
                for g in [m.lag, m.pending, m.points, m.lastCommit, m.health, m.retries] { registry.unregisterGauge(g) }
                for c in [m.shipped, m.sent] { registry.unregisterCounter(c) }
            }
            for s in states {
                var m = table[s.vm] ?? makeMetrics(vm: s.vm)
                m.lag.set(s.lagSeconds ?? 0)
                m.pending.set(Double(policies[s.vm].map { Self.pendingBytes($0, replicator.disks) } ?? s.pendingBytes))
                m.points.set(Double(points[s.vm] ?? 0))
                m.lastCommit.set(s.lastPointTime.flatMap(ISOTime.parse).map(\.timeIntervalSince1970) ?? 0)
                m.health.set(Double(s.health.exitCode))
                m.retries.set(Double(s.retryAttempt))
                if s.logBytesShipped > m.shippedSoFar { m.shipped.increment(by: s.logBytesShipped - m.shippedSoFar) }
                if s.bytesSent > m.sentSoFar { m.sent.increment(by: s.bytesSent - m.sentSoFar) }
                m.shippedSoFar = max(m.shippedSoFar, s.logBytesShipped)
                m.sentSoFar = max(m.sentSoFar, s.bytesSent)
                table[s.vm] = m
            }
        }
        return registry.emitToString()
    }

    /// Log bytes at the source not yet shipped, now: the sealed logs waiting and the active ones.
    static func pendingBytes(_ vm: ProtectedVM, _ disks: DiskSet) -> Int64 {
        vm.disks.compactMap { disks.journal(named: $0) }.reduce(Int64(0)) { total, journal in
            let sealed = ((try? journal.sealedLogs()) ?? []).reduce(Int64(0)) { $0 + Int64((try? FileSystem.stat($1).st_size) ?? 0) }
            return total + sealed + journal.state.logBytes
        }
    }

    private func makeMetrics(vm: String) -> VMMetrics {
        let l = [("vm", vm)]
        return VMMetrics(
            lag: registry.makeGauge(name: "replicafs_vm_lag_seconds", labels: l,
                                    help: "Seconds since the cut of the newest point committed at the target (the replication lag)."),
            pending: registry.makeGauge(name: "replicafs_vm_pending_bytes", labels: l,
                                        help: "Change-log bytes logged at the source and not yet shipped."),
            points: registry.makeGauge(name: "replicafs_vm_points", labels: l, help: "Recovery points held at the target."),
            lastCommit: registry.makeGauge(name: "replicafs_vm_last_commit_timestamp_seconds", labels: l,
                                           help: "Unix time of the cut of the newest committed point (0: none yet)."),
            health: registry.makeGauge(name: "replicafs_vm_health", labels: l, help: "Replication health: 0 normal, 1 warning, 2 critical."),
            retries: registry.makeGauge(name: "replicafs_vm_retry_attempts", labels: l,
                                        help: "Consecutive failed replication attempts (0 after a success)."),
            shipped: registry.makeCounter(name: "replicafs_vm_shipped_bytes_total", labels: l,
                                          help: "Change-log bytes shipped to the target by this daemon."),
            sent: registry.makeCounter(name: "replicafs_vm_sent_bytes_total", labels: l,
                                       help: "Bytes that crossed to the target (less than shipped when compressed)."))
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? IOError, e.errnoCode == EADDRINUSE { return "the address is already in use" }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        return "\(error)"
    }

    /// Lets the channel initializer reach the server, made after the bind.
    final class Box: Sendable {
        let value = Mutex<MetricsServer?>(nil)
        var server: MetricsServer? {
            get { value.withLock { $0 } }
            set { value.withLock { $0 = newValue } }
        }
    }
}

/// One HTTP/1.1 exchange per request: reads the head, answers at its end.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let answer: (HTTPMethod, String) -> (HTTPResponseStatus, String, String)
    private var head: HTTPRequestHead?

    init(answer: @escaping (HTTPMethod, String) -> (HTTPResponseStatus, String, String)) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let (status, type, body) = answer(head.method, head.uri)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: type)
            headers.add(name: "Content-Length", value: String(body.utf8.count))
            if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            }
            let keepAlive = head.isKeepAlive
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { bound.value.close(promise: nil) }
            }
        }
    }
}
