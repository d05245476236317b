import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One disk of a VM at a recovery point, read from the bucket by range: the base's chunks
/// (whole chunk objects) with the point's redo logs over them (segments of the log objects,
/// fetched by range GET), each checked against its SHA-256 and kept in the store's local
/// cache. Opening fetches only the base's chunk table and the logs' indexes, so it costs the
/// changes since the base, not the disk's size. It stays at its point: if a merge deletes an
/// object it was reading, it reloads the catalog (whose point reads the same bytes) and goes on.
final class ObjectPointReader: PointReader, Sendable {
    let vm: String
    let disk: String
    let pointID: Int
    let size: Int64
    private let store: ObjectStore

    private struct Snapshot: Sendable {
        var chunkSize: Int
        /// The disk's size at the base: base bytes past it read as zeros.
        var baseSize: Int64
        var table: ChunkTable
        var logs: [LogRef]
        var indexes: [LogIndex]
        var map: ExtentMap
    }
    private let snapshot: Mutex<Snapshot>
    private let prefetching = Mutex<Set<String>>([])
    /// Where the last read ended: a read starting near it is sequential and moves read-ahead on.
    private let lastEnd = Mutex<Int64>(-1)

    /// Opens `disk` of `vm` at point `pointID` of `catalog` (nil: its latest point, or the base).
    init(store: ObjectStore, vm: String, disk: String, catalog: ObjectCatalog, pointID: Int?) throws {
        self.store = store
        self.vm = vm
        self.disk = disk
        let through = catalog.store.baseThrough ?? 0
        let id = pointID ?? catalog.store.points.last?.id ?? through
        if let point = catalog.store.points.first(where: { $0.id == id }) {
            guard let s = point.diskSizes[disk] else { throw ReplicaError("disk \(disk) has no size at point \(id) of VM \(vm)") }
            size = s
        } else if id == through, let s = catalog.baseSizes[disk] {
            size = s
        } else {
            throw ReplicaError("recovery point \(id) not found for VM \(vm)", code: .noSuchPoint)
        }
        self.pointID = id
        snapshot = Mutex(try Self.load(store, vm: vm, disk: disk, catalog: catalog, pointID: id))
    }

    private static func load(_ store: ObjectStore, vm: String, disk: String, catalog: ObjectCatalog, pointID: Int) throws -> Snapshot {
        guard let base = catalog.bases[disk] else { throw ReplicaError("disk \(disk) is not part of VM \(vm)") }
        let table = try ChunkTable(decoding: store.fetch(base, what: "chunk table of disk \(disk)"), key: base.key)
        let logs = catalog.redoLogs(disk: disk, through: pointID)
        // Folded log by log (LastWriterWinsMap): memory follows the map, not the window's records.
        var changes = LastWriterWinsMap<ExtentMap.Extent>()
        var indexes: [LogIndex] = []
        for (n, ref) in logs.enumerated() {
            var index = try LogIndex(decoding: store.fetch(ref.index, what: "index of log \(ref.log.key)"), key: ref.index.key)
            for change in ExtentMap.changes(of: index, log: n) { changes.add(change) }
            index.records = []  // reads need the segments only; the records are in the map now
            indexes.append(index)
        }
        return Snapshot(chunkSize: catalog.chunkSize, baseSize: catalog.baseSizes[disk] ?? 0, table: table, logs: logs, indexes: indexes,
                        map: ExtentMap(sweptExtents: changes.finish()))
    }

    /// Chunks the point's redo logs touch below its size (what a merge to it rewrites).
    func touchedChunks() -> Set<Int> {
        snapshot.withLock { $0.map.touchedChunks(chunkSize: $0.chunkSize, size: size) }
    }

    /// Log bytes mapped: none are; the extent map is what presenting the point costs.
    var overlayBytes: Int { snapshot.withLock { $0.map.extents.count * MemoryLayout<ExtentMap.Extent>.stride } }

    func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        do {
            try fill(snapshot.withLock { $0 }, buffer, count: count, offset: offset)
        } catch is ObjectMissing {
            // A merge moved the base past objects this view used: the point reads the same from
            // the catalog that now lists it.
            let catalog = try store.latestCatalog(vm)
            guard catalog.store.points.contains(where: { $0.id == pointID }) || catalog.store.baseThrough == pointID else {
                throw ReplicaError("recovery point \(pointID) of VM \(vm) was merged into the base while read", code: .noSuchPoint)
            }
            let fresh = try Self.load(store, vm: vm, disk: disk, catalog: catalog, pointID: pointID)
            snapshot.withLock { $0 = fresh }
            try fill(fresh, buffer, count: count, offset: offset)
        }
    }

    private func fill(_ s: Snapshot, _ buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws {
        let cs = Int64(s.chunkSize)
        var at = offset
        let end = offset + Int64(count)
        let sequential = lastEnd.withLock { last -> Bool in
            defer { last = end }
            return last >= 0 && offset >= last - Self.sequentialSlack && offset <= last + Self.sequentialSlack
        }
        while at < end {
            let ci = Int(at / cs)
            let inChunk = Int(at - Int64(ci) * cs)
            let n = Int(min(end, Int64(ci + 1) * cs) - at)
            let out = buffer + Int(at - offset)
            if ci < s.table.digests.count, let sha = s.table.digests[ci] {
                let bytes = try chunk(sha)
                let have = max(0, min(n, bytes.count - inChunk, Int(min(Int64(Int.max / 2), s.baseSize - at))))
                if have > 0 { _ = bytes.withUnsafeBytes { memcpy(out, $0.baseAddress! + inChunk, have) } }
                if have < n { memset(out + have, 0, n - have) }
            } else {
                memset(out, 0, n)
            }
            at += Int64(n)
        }
        var i = s.map.firstIndex(endingAfter: offset)
        while i < s.map.extents.count, s.map.extents[i].start < end {
            let e = s.map.extents[i]
            let from = max(e.start, offset), to = min(e.end, end)
            let out = buffer + Int(from - offset)
            if let log = e.log {
                // The piece lies in one record's data, so in one segment.
                var pos = e.logOffset + (from - e.start)
                var done = 0
                while done < Int(to - from) {
                    guard let seg = s.indexes[log].segment(containing: pos) else {
                        throw ReplicaError("\(s.logs[log].log.key): log index has no segment at \(pos)")
                    }
                    let bytes = try segment(s.logs[log], seg)
                    let inSeg = Int(pos - seg.logOffset)
                    let n = min(Int(to - from) - done, bytes.count - inSeg)
                    _ = bytes.withUnsafeBytes { memcpy(out + done, $0.baseAddress! + inSeg, n) }
                    done += n
                    pos += Int64(n)
                }
            } else {
                memset(out, 0, Int(to - from))
            }
            i += 1
        }
        // A read following the last: keep the next chunks fetching (in parallel) while these
        // are used, a window that slides with the reader. A random reader fetches what it reads.
        if count > 0, sequential {
            prefetch(s, after: Int((end - 1) / cs))
        }
    }

    /// How far (the kernel reorders and splits its read-ahead) a read may start from where the
    /// last one ended and still count as sequential.
    static let sequentialSlack: Int64 = 256 << 10

    private func chunk(_ sha: String) throws -> [UInt8] {
        let key = store.chunkKey(vm, sha)
        return try store.cache.bytes(sha256: sha, what: "chunk \(key)") {
            guard let bytes = try store.bucket.get(key, range: nil) else { throw ObjectMissing() }
            return bytes
        }
    }

    private func segment(_ ref: LogRef, _ seg: LogIndex.Segment) throws -> [UInt8] {
        try store.cache.bytes(sha256: seg.sha256, what: "log \(ref.log.key) at \(seg.logOffset)") {
            guard let bytes = try store.bucket.get(ref.log.key, range: seg.logOffset..<(seg.logOffset + seg.length)) else {
                throw ObjectMissing()
            }
            return bytes
        }
    }

    private func prefetch(_ s: Snapshot, after ci: Int) {
        guard store.readAhead > 0 else { return }
        for next in (ci + 1)...(ci + store.readAhead) where next < s.table.digests.count {
            guard let sha = s.table.digests[next], !store.cache.hasOrFetches(sha) else { continue }
            guard prefetching.withLock({ $0.insert(sha).inserted }) else { continue }
            // A thread of its own per GET: Dispatch's pool on Linux runs about one block per
            // core, so GETs waiting on the network would queue behind each other there.
            let thread = Thread { [self] in
                _ = try? chunk(sha)
                prefetching.withLock { _ = $0.remove(sha) }
            }
            thread.name = "s3-read-ahead"
            thread.start()
        }
    }
}

/// An object the catalog named is gone (a merge deleted it): reload and read again.
struct ObjectMissing: Error {}
