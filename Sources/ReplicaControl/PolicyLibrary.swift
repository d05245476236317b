import Foundation
import ReplicaStore
import ReplicaSystem

/// Named, reusable replication policies (`replicafs policy create|show|list|delete`), one JSON
/// file each in `<state>/policies/<name>.json` beside the VM registry. A policy holds the
/// settings a VM can change without touching its replica or points: copy frequency,
/// retention, app-consistent interval, compression, quiesce and thaw hooks, bandwidth limit.
/// Applying one copies its settings into the VM's `ProtectedVM` (which the daemon re-reads
/// every pass); editing a policy later does not change VMs until it is applied again.
public struct PolicyLibrary: Sendable {
    /// A named policy: the settings `apply(to:)` copies.
    public struct Named: Codable, Sendable, Equatable {
        public var name: String
        public var copyFrequency: Double
        public var retention: Double
        public var appConsistentEvery: Double?
        public var compress: Bool
        public var quiesce: String?
        public var thaw: String?
        public var maxBandwidth: String?

        public init(name: String, from policy: ReplicationPolicy) {
            self.name = name
            copyFrequency = policy.copyFrequency
            retention = policy.retention
            appConsistentEvery = policy.appConsistentEvery
            compress = policy.compress
            quiesce = policy.quiesce
            thaw = policy.thaw
            maxBandwidth = policy.maxBandwidth
        }

        /// `policy` with this policy's settings (the VM's own initial time, RPO and resync
        /// settings stay).
        public func apply(to policy: ReplicationPolicy) -> ReplicationPolicy {
            var p = policy
            p.copyFrequency = copyFrequency
            p.retention = retention
            p.appConsistentEvery = appConsistentEvery
            p.compress = compress
            p.quiesce = quiesce
            p.thaw = thaw
            p.maxBandwidth = maxBandwidth
            return p
        }

        /// The settings as a policy of their own (for validation).
        public var policy: ReplicationPolicy { apply(to: ReplicationPolicy()) }
    }

    public let directory: String

    public init(registry: VMRegistry = VMRegistry()) {
        directory = registry.directory + "/policies"
    }

    public static func validName(_ name: String) -> Bool { ProtectedVM.validName(name) }

    func path(_ name: String) -> String { directory + "/" + name + ".json" }

    public func lookup(_ name: String) -> Named? {
        guard Self.validName(name), let bytes = VMRegistry.readTrusted(path(name)) else { return nil }
        return try? JSONDecoder().decode(Named.self, from: Data(bytes))
    }

    /// The policy, or a one-line error naming it and the commands that list or create one.
    public func require(_ name: String) throws -> Named {
        guard Self.validName(name) else {
            throw ReplicaError("bad policy name '\(name)': use letters, digits, '.', '_' and '-'", code: .badRequest)
        }
        guard let policy = lookup(name) else {
            throw ReplicaError("unknown policy \(name): `replicafs policy list` shows the policies, `replicafs policy create \(name) ...` makes one", code: .badRequest)
        }
        return policy
    }

    public func all() -> [Named] {
        guard let names = try? FileSystem.list(directory) else { return [] }
        return names.filter { $0.hasSuffix(".json") }.compactMap { lookup(String($0.dropLast(5))) }
    }

    /// Writes the policy atomically after checking it against the seeds' limits.
    public func save(_ policy: Named) throws {
        guard Self.validName(policy.name) else {
            throw ReplicaError("bad policy name '\(policy.name)': use letters, digits, '.', '_' and '-'", code: .badRequest)
        }
        try policy.policy.validateRules()
        try VMRegistry.prepare(directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(policy).withUnsafeBytes { try FileSystem.writeAtomically(path(policy.name), $0) }
    }

    public func delete(_ name: String) throws {
        _ = try require(name)
        try FileSystem.remove(path(name))
    }
}
