import ReplicaStore
import ReplicaSystem

/// Retention: expired points are dropped and their logs folded into the base by writing NEW
/// chunk objects (content-addressed, so no chunk a listed point or an open reader uses is
/// ever rewritten) and new chunk tables, named by the next catalog generation. Objects no
/// kept catalog refers to are deleted only after that generation is published.
extension ObjectStore {
    @discardableResult
    public func prune(vm: String, retentionSeconds: Double, nowNanos: UInt64) throws -> [Int] {
        let keep = TimeLimits.clampedNanos(seconds: retentionSeconds)
        let cutoff = nowNanos > keep ? nowNanos - keep : 0
        let expired = try mutate(vm) { catalog -> [Int]? in
            guard let latest = catalog.store.points.last else { return nil }
            // A failover in progress keeps its point and every later one.
            let keepFrom = catalog.failover?.point.id ?? Int.max
            let expired = catalog.store.points.filter { $0.timeNanos < cutoff && $0.id != latest.id && $0.id < keepFrom }.map(\.id)
            guard !expired.isEmpty else { return nil }
            catalog.store.points.removeAll { expired.contains($0.id) }
            try merge(&catalog, through: catalog.store.points.first!.id)
            return expired
        }
        guard let expired else { return [] }
        try collectGarbage(vm)
        return expired
    }

    /// Brings the base of `catalog` to point `id`: for each disk, the chunks the logs up to
    /// `id` touch are read at that point and stored as new chunk objects; the rest keep their
    /// objects. The logs of the merged points leave the catalog.
    func merge(_ catalog: inout ObjectCatalog, through id: Int) throws {
        let from = catalog.store.baseThrough ?? 0
        guard id > from else { return }
        let cs = catalog.chunkSize
        for disk in catalog.store.disks.map(\.name) {
            let reader = try ObjectPointReader(store: self, vm: catalog.store.vm, disk: disk, catalog: catalog, pointID: id)
            let oldSize = catalog.baseSizes[disk] ?? 0
            let size = reader.size
            let old = try ChunkTable(decoding: fetch(catalog.bases[disk]!, what: "chunk table of disk \(disk)"), key: catalog.bases[disk]!.key)
            var touched = reader.touchedChunks()
            // The chunk the size now ends in holds zeros past the end: a later growth reads them.
            if size != oldSize, size % Int64(cs) != 0 { touched.insert(Int(size / Int64(cs))) }
            let count = ChunkTable.count(size: size, chunkSize: cs)
            var table = ChunkTable(digests: (0..<count).map { $0 < old.digests.count ? old.digests[$0] : nil })
            var pending: [(bytes: [UInt8], sha: String)] = []
            for ci in touched.sorted() where ci < count {
                let start = Int64(ci) * Int64(cs)
                let n = Int(min(Int64(cs), size - start))
                var bytes = [UInt8](repeating: 0, count: n)
                try bytes.withUnsafeMutableBytes { try reader.read(into: $0.baseAddress!, count: n, offset: start) }
                if bytes.allSatisfy({ $0 == 0 }) {
                    table.digests[ci] = nil
                } else {
                    let sha = ObjectDigest.sha256(bytes)
                    table.digests[ci] = sha
                    pending.append((bytes, sha))
                }
                if pending.count >= 8 {
                    try putChunks(catalog.store.vm, pending)
                    pending.removeAll()
                }
            }
            try putChunks(catalog.store.vm, pending)
            catalog.bases[disk] = try putChecked(ObjectLayout.baseTable(catalog.store.vm, catalog.generation + 1, disk), table.encoded())
            catalog.baseSizes[disk] = size
        }
        for key in catalog.logs.keys where (Int(key) ?? 0) <= id { catalog.logs[key] = nil }
        catalog.store.baseThrough = id
    }

    /// Deletes what no kept catalog (the newest two generations) refers to: older catalogs,
    /// chunk tables, chunks, logs and indexes a merge released or a crash left unnamed, and an
    /// initial copy's progress. Returns the keys deleted.
    @discardableResult
    func collectGarbage(_ vm: String) throws -> [String] {
        let objects = try bucket.list(prefix: ObjectLayout.root(vm))
        let catalogKeys = objects.map(\.key).filter { $0.hasPrefix(ObjectLayout.catalogs(vm)) }.sorted()
        guard !catalogKeys.isEmpty else { return [] }
        var kept: [ObjectCatalog] = []
        for key in catalogKeys.suffix(2) {
            guard let bytes = try bucket.get(key, range: nil) else { continue }
            kept.append(try ObjectCatalog.decode(bytes, key: key))
        }
        guard !kept.isEmpty else { return [] }
        var referenced = Set<String>()
        var chunks = Set<String>()
        for catalog in kept {
            referenced.formUnion(catalog.referencedKeys)
            for ref in catalog.bases.values {
                // A chunk table that cannot be read keeps every chunk.
                guard let table = try? ChunkTable(decoding: fetch(ref, what: "chunk table"), key: ref.key) else { return [] }
                chunks.formUnion(table.digests.compactMap { $0 })
            }
        }
        let chunkKeys = Set(chunks.map { chunkKey(vm, $0) })
        var deleted: [String] = []
        let root = ObjectLayout.root(vm)
        for object in objects {
            let rest = object.key.dropFirst(root.count)
            let garbage: Bool
            if object.key.hasPrefix(ObjectLayout.catalogs(vm)) {
                garbage = !catalogKeys.suffix(2).contains(object.key)
            } else if rest.hasPrefix("chunks/") {
                garbage = !chunkKeys.contains(object.key)
            } else if rest.hasPrefix("base/") || rest.hasPrefix("logs/") || rest.hasPrefix("resync/") {
                garbage = !referenced.contains(object.key)
            } else {
                garbage = rest.hasPrefix("initial/")
            }
            if garbage {
                try bucket.delete(object.key)
                deleted.append(object.key)
            }
        }
        return deleted
    }

    /// Deletes what a crash left behind: objects of a commit, merge or resync that no catalog
    /// names (a point is never half there: without its catalog generation it does not exist).
    public func recover(vm: String) throws {
        try requireVM(vm)
        try collectGarbage(vm)
    }
}
