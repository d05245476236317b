import Foundation
import ReplicaSystem

/// The networks a failed-over VM should be attached to at the recovery site: each source
/// network of the VM (from the store's vm.json) mapped through the recovery plan's
/// networkMapping. Written to `network.json` in the failover's working directory before its
/// mount starts; the failover mount shows it read-only beside the disks for the hypervisor.
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

    /// Writes `network.json` into a failover's working directory, where its mount shows it.
    public func save(in directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).withUnsafeBytes { try FileSystem.writeAtomically(directory + "/network.json", $0) }
    }
}
