import Foundation
import ReplicaSystem

/// The networks a failed-over VM should be attached to at the recovery site: each source
/// network of the VM (from the store's vm.json) mapped through the recovery plan's
/// networkMapping. Written to `<store>/<vm>/failover/network.json` before the VM's failover;
/// the failover mount shows it read-only beside the disks for the hypervisor to use.
public struct FailoverNetworks: Codable, Sendable, Equatable {
    public struct Mapping: Codable, Sendable, Equatable {
        public var source: String
        public var target: String
    }

    public var vm: String
    public var plan: String
    public var networks: [Mapping]

    /// Maps `sourceNetworks`; a network the mapping does not name is an error.
    public init(vm: String, plan: String, sourceNetworks: [String], mapping: [String: String]) throws {
        self.vm = vm
        self.plan = plan
        let unmapped = sourceNetworks.filter { mapping[$0] == nil }
        guard unmapped.isEmpty else {
            throw ReplicaError("VM \(vm) is attached to network\(unmapped.count == 1 ? "" : "s") \(unmapped.joined(separator: ", ")) that plan \(plan)'s networkMapping does not map")
        }
        networks = sourceNetworks.map { Mapping(source: $0, target: mapping[$0]!) }
    }

    public static func path(store: String, vm: String) -> String { store + "/" + vm + "/failover/network.json" }

    /// Writes the file; returns whether it created the failover directory (so a failed
    /// failover can take it away again and leave no trace).
    @discardableResult
    public func save(store: String) throws -> Bool {
        let dir = store + "/" + vm + "/failover"
        let created = !FileSystem.isDirectory(dir)
        try FileSystem.mkdirs(dir)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).withUnsafeBytes { try FileSystem.writeAtomically(Self.path(store: store, vm: vm), $0) }
        return created
    }
}
