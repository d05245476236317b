import Foundation
import ReplicaStore
import ReplicaSystem

/// One generation of a VM's catalog in the object store: the engine's `StoreCatalog` (disks,
/// chains, points, base point, resync) plus where each part lives: the base's chunk tables,
/// each point's redo logs, a finished resync's blocks and the failover in progress. Written
/// whole as `vms/<vm>/catalog/<generation>` with `If-None-Match: *`, last in every change:
/// that conditional write is the store's one atomic step (docs/object-store.md).
struct ObjectCatalog: Codable, Sendable {
    var generation: Int
    var store: StoreCatalog
    /// Bytes per base chunk (the last chunk of a disk may be shorter).
    var chunkSize: Int
    /// Each disk's base chunk table (`ChunkTable`), as of `store.baseThrough`.
    var bases: [String: ObjectRef]
    /// Each disk's size as of the base.
    var baseSizes: [String: Int64]
    /// Redo logs by point id (decimal) and disk, in apply order (a resync's blocks first).
    var logs: [String: [String: [LogRef]]]
    /// A finished resync's blocks, the first redo logs of the next point.
    var resyncLogs: [String: [LogRef]]
    var failover: FailoverState?

    /// Every point's logs of `disk` after the base up to `id`, in apply order.
    func redoLogs(disk: String, through id: Int) -> [LogRef] {
        let from = store.baseThrough ?? 0
        guard id > from else { return [] }
        return ((from + 1)...id).flatMap { logs[String($0)]?[disk] ?? [] }
    }

    /// Every object this generation refers to but the chunks (which its tables list).
    var referencedKeys: Set<String> {
        var keys = Set(bases.values.map(\.key))
        for refs in logs.values.flatMap(\.values) + Array(resyncLogs.values) {
            for r in refs { keys.insert(r.log.key); keys.insert(r.index.key) }
        }
        return keys
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }

    static func decode(_ bytes: [UInt8], key: String) throws -> ObjectCatalog {
        do {
            return try JSONDecoder().decode(ObjectCatalog.self, from: Data(bytes))
        } catch {
            throw ReplicaError("\(key): unreadable catalog (\(error))", kind: .nonRecoverable)
        }
    }
}
