import Foundation
import ReplicaSystem

/// What the target store knows about a protected VM without its primary: its disks and the
/// source networks it is attached to. Kept by the target store (`metadata`, `saveMetadata`;
/// `<store>/<vm>/vm.json` in a directory store), written by `protect`
/// (when the store is reachable) and again by the replicator when it seeds the replica, so a
/// recovery plan can map the VM's networks after the primary site is gone.
public struct VMMetadata: Codable, Sendable, Equatable {
    public var vm: String
    public var disks: [String]
    public var networks: [String]
    /// The VM's replication policy as last protected or updated (`replicafs vms --target`);
    /// nil in metadata written before it was recorded.
    public var policy: ReplicationPolicy?

    public init(vm: String, disks: [String], networks: [String], policy: ReplicationPolicy? = nil) {
        self.vm = vm
        self.disks = disks
        self.networks = networks
        self.policy = policy
    }

    public init(_ protected: ProtectedVM) {
        self.init(vm: protected.name, disks: protected.disks, networks: protected.networks ?? [], policy: protected.policy)
    }
}
