import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaStore
import ReplicaSystem

/// `replicafs policy`: named, reusable replication policies (`PolicyLibrary`), used by
/// `protect --policy NAME` and applied to a protected VM with `policy apply NAME <vm>`.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Named replication policies: copy frequency, retention, app-consistent points, compression, hooks, bandwidth.",
        discussion: "Limits: copy frequency continuous, 30s, 5m or 15m; app-consistent points every 1h to 12h; retention at least the copy frequency.",
        subcommands: [PolicyCreateCommand.self, PolicyShowCommand.self, PolicyListCommand.self, PolicyDeleteCommand.self,
                      PolicyApplyCommand.self])
}

/// What `policy show` and `policy list --json` print of a policy.
struct PolicyRow: Encodable {
    var name: String
    var copyFrequency: String
    var retention: String
    var appConsistentEvery: String?
    var compress: Bool
    var quiesce: String?
    var thaw: String?
    var maxBandwidth: String?
    /// VMs registered on this host that follow the policy.
    var vms: [String]

    init(_ p: PolicyLibrary.Named, vms: [String]) {
        name = p.name
        copyFrequency = ReplicationPolicy.describe(p.copyFrequency)
        retention = ReplicationPolicy.describe(p.retention)
        appConsistentEvery = p.appConsistentEvery.map(ReplicationPolicy.describe)
        compress = p.compress
        quiesce = p.quiesce
        thaw = p.thaw
        maxBandwidth = p.maxBandwidth
        self.vms = vms
    }

    static func users(of name: String) -> [String] { VMRegistry().all().filter { $0.policy == name }.map(\.vm) }
}

struct PolicyCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create (or with --replace, redefine) a named policy; unset settings take the defaults.")
    @Argument(help: "Policy name.") var name: String
    @OptionGroup var settings: PolicyOptions
    @Flag(help: "Redefine an existing policy (VMs keep their settings until `policy apply`).") var replace = false

    func run() throws {
        let library = PolicyLibrary()
        if !replace, PolicyLibrary.validName(name), library.lookup(name) != nil {
            throw ReplicaError("policy \(name) exists: `replicafs policy create \(name) --replace ...` redefines it")
        }
        let policy = PolicyLibrary.Named(name: name, from: try settings.applied(to: ReplicationPolicy()))
        try library.save(policy)
        print("policy \(name): " + policy.policy.settingLines.map { "\($0.0) \($0.1)" }.joined(separator: ", "))
    }
}

struct PolicyShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a named policy and the VMs that follow it.")
    @Argument(help: "Policy name.") var name: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        let policy = try PolicyLibrary().require(name)
        let row = PolicyRow(policy, vms: PolicyRow.users(of: name))
        if output.json { return try printJSON(row) }
        print("policy \(name)")
        for (key, value) in policy.policy.settingLines { print("  \(key): \(value)") }
        print("  VMs: \(row.vms.isEmpty ? "none" : row.vms.joined(separator: ", "))")
    }
}

struct PolicyListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the named policies.")
    @OptionGroup var output: OutputOptions

    func run() throws {
        let rows = PolicyLibrary().all().map { PolicyRow($0, vms: PolicyRow.users(of: $0.name)) }
        if output.json { return try printJSON(rows) }
        if rows.isEmpty { print("no policies: `replicafs policy create NAME --copy-frequency 5m ...` makes one") }
        for r in rows {
            print("\(r.name)\tevery \(r.copyFrequency)\tkeep \(r.retention)\tapp-consistent \(r.appConsistentEvery ?? "off")\t\(r.compress ? "compressed" : "uncompressed")\tVMs: \(r.vms.isEmpty ? "none" : r.vms.joined(separator: ","))")
        }
    }
}

struct PolicyDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a named policy no registered VM follows.")
    @Argument(help: "Policy name.") var name: String

    func run() throws {
        let library = PolicyLibrary()
        _ = try library.require(name)
        let users = PolicyRow.users(of: name)
        guard users.isEmpty else {
            throw ReplicaError("policy \(name) is followed by \(users.joined(separator: ", ")): apply another one first (`replicafs policy apply OTHER \(users[0])`)")
        }
        try library.delete(name)
        print("deleted policy \(name)")
    }
}

struct PolicyApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Give a protected VM a named policy's settings; its replica and points stay.",
        discussion: "A running mount daemon uses the new settings from its next pass.")
    @Argument(help: "Policy name.") var name: String
    @Argument(help: "VM name.") var vm: String
    @Option(help: "The VM's disks directory (default: the one this host registered for the VM).") var disksDir: String?

    func run() throws {
        let policy = try PolicyLibrary().require(name)
        guard ProtectedVM.validName(vm) else { throw ReplicaError("bad VM name '\(vm)': use letters, digits, '.', '_' and '-'") }
        let updated = try PolicyUpdate.apply(vm, disksDir: disksDir, command: "policy apply \(name)") { policy.apply(to: $0) }
        try VMRegistry().update(vm, disksDir: updated.disksDir, target: updated.vm.target) { $0.policy = name }
        print(updated.changes.isEmpty ? "VM \(vm) follows policy \(name) (no setting changed)" : "VM \(vm) follows policy \(name): \(updated.changes)")
    }
}
