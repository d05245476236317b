import ReplicaSystem

/// The keys of the object store's layout (docs/object-store.md, "Layout"), relative to the
/// bucket's prefix. Everything of one VM lives under `vms/<vm>/`; the failover markers under
/// `failovers/` let a restarting host find its failed-over VMs without listing every VM.
enum ObjectLayout {
    static func root(_ vm: String) -> String { "vms/\(vm)/" }
    static func catalogs(_ vm: String) -> String { root(vm) + "catalog/" }
    /// Generation `g` of the catalog: zero-padded so the key order is the generation order.
    static func catalog(_ vm: String, _ generation: Int) -> String { catalogs(vm) + String(generation).leftPadded(12) }
    static func generation(ofCatalogKey key: String) -> Int? { key.split(separator: "/").last.flatMap { Int($0) } }
    /// A base chunk, named by the SHA-256 of its bytes: never rewritten, shared by every base
    /// table that holds the same bytes.
    static func chunk(_ vm: String, _ sha: String) -> String { root(vm) + "chunks/" + sha }
    static func chunks(_ vm: String) -> String { root(vm) + "chunks/" }
    /// The table of a disk's base chunks as of catalog generation `generation`.
    static func baseTable(_ vm: String, _ generation: Int, _ disk: String) -> String {
        root(vm) + "base/" + String(generation).leftPadded(12) + "/" + disk + ".table"
    }
    /// A shipped log of point `point` (its source name keeps resends and resumed uploads on one key).
    static func log(_ vm: String, point: Int, disk: String, name: String) -> String {
        root(vm) + "logs/" + String(point).leftPadded(8) + "/" + disk + "/" + name
    }
    static func logsRoot(_ vm: String) -> String { root(vm) + "logs/" }
    /// The blocks a resync or rebase stored for the point `point` will be.
    static func resyncLog(_ vm: String, point: Int, disk: String, kind: String) -> String {
        root(vm) + "resync/" + String(point).leftPadded(8) + "/" + disk + "." + kind + ".hrl"
    }
    static func index(ofLog key: String) -> String { key + ".idx" }
    static func initialState(_ vm: String) -> String { root(vm) + "initial/state.json" }
    static func initialTable(_ vm: String, _ disk: String) -> String { root(vm) + "initial/" + disk + ".table" }
    static func metadata(_ vm: String) -> String { root(vm) + "vm.json" }
    static let failovers = "failovers/"
    static func failoverMarker(_ vm: String) -> String { failovers + vm }
}
