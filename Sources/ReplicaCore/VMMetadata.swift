import Foundation

/// What the target store knows about a protected VM without its primary: its disks and the
/// source networks it is attached to. Kept by the target store (`metadata`, `saveMetadata`;
/// `<store>/<vm>/vm.json` in a directory store), written by `protect`
/// (when the store is reachable) and again by the replicator when it seeds the replica, so a
/// recovery plan can map the VM's networks after the primary site is gone.
public struct VMMetadata: Codable, Sendable, Equatable {
    public var vm: String
    public var disks: [String]
    public var networks: [String]

    public init(vm: String, disks: [String], networks: [String]) {
        self.vm = vm
        self.disks = disks
        self.networks = networks
    }

    public init(_ protected: ProtectedVM) {
        self.init(vm: protected.name, disks: protected.disks, networks: protected.networks ?? [])
    }

    static func path(store: String, vm: String) -> String { store + "/" + vm + "/vm.json" }

    /// The VM's metadata in the store; nil when the store has none (never protected, or
    /// protected before networks were recorded).
    static func load(store: String, vm: String) throws -> VMMetadata? {
        let path = path(store: store, vm: vm)
        guard FileSystem.exists(path) else { return nil }
        do {
            return try JSONDecoder().decode(VMMetadata.self, from: Data(try FileSystem.readFile(path)))
        } catch {
            throw ReplicaError("\(path): unreadable VM metadata (\(error))")
        }
    }

    /// Writes `<store>/<vm>/vm.json` atomically, creating the VM's directory if needed.
    func save(store: String) throws {
        try FileSystem.mkdirs(store + "/" + vm)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).withUnsafeBytes { try FileSystem.writeAtomically(Self.path(store: store, vm: vm), $0) }
    }
}
