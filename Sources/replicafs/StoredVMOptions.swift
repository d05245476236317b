import ArgumentParser
import ReplicaControl
import ReplicaStore
import ReplicaSystem

/// The options of every command that acts on a VM in a target store: its name and the store.
/// `--target` may be left out when this host knows the VM (`VMRegistry`: it protects it or
/// failed it over): the store is then the one registered.
struct StoredVMOptions: ParsableArguments {
    @Argument(help: "VM name.") var vm: String
    @Option(name: .customLong("target"), help: "Target store (default: the one this host registered for the VM).")
    var givenTarget: String?
    /// The store: `--target`, else the registered one (set by `validate`).
    var target: String { givenTarget ?? "" }
    @Option(help: "PKI directory for a replicafs:// target (default /etc/replicafs/pki).") var pki: String?
    @OptionGroup var objectStore: ObjectStoreAccessOptions

    /// How to open the target: the options given (PKI directory, object-store access) over
    /// the ones the VM was protected with on this host.
    var targetOptions: TargetOptions { storeOptions }

    /// How to open the target for the failover commands: `--pki` when given, else the options
    /// the VM was protected with on this host (its saved `targetOptions`: the primary opens a
    /// `replicafs://` store with the PKI `protect` was given), else the defaults.
    var storeOptions: TargetOptions {
        var options = TargetOptions()
        if let entry = VMRegistry().lookup(vm), let dir = entry.disksDir, entry.target == target,
           let saved = ProtectedVM.all(disksDir: dir).first(where: { $0.name == vm })?.targetOptions {
            options = saved
        }
        if let pki { options.pki = pki }
        try? objectStore.apply(to: &options)
        return options
    }

    mutating func validate() throws {
        guard ProtectedVM.validName(vm) else {
            throw ReplicaError("bad VM name '\(vm)': use letters, digits, '.', '_' and '-'", code: .badRequest)
        }
        if givenTarget == nil { givenTarget = try resolveTarget(vm) }
        guard !target.isEmpty else { throw ReplicaError("--target is empty", code: .badRequest) }
        var checked = TargetOptions()
        try objectStore.apply(to: &checked)
    }

    /// The registered target of `vm`, or an error naming the VM and what to run.
    func resolveTarget(_ vm: String) throws -> String {
        guard let entry = VMRegistry().lookup(vm) else { throw VMRegistry.notRegistered(vm, command: commandWords(before: vm)) }
        return entry.target
    }
}

/// The options that name the primary's disks directory: `--disks-dir` everywhere, with `--to`
/// kept as a hidden alias where failback and reprotect used to take it.
struct DisksDirOption: ParsableArguments {
    @Option(help: "The primary's disks directory, or replicafs://HOST[:PORT] where the primary serves it (`serve --disks-dir`) (default: where the failover came from or was reprotected to, else the one this host registered for the VM; created if gone).")
    var disksDir: String?
    @Option(name: .customLong("to"), help: .hidden) var legacyTo: String?

    mutating func validate() throws {
        if disksDir != nil && legacyTo != nil { throw ReplicaError("give --disks-dir once (--to is its old name)", code: .badRequest) }
        disksDir = disksDir ?? legacyTo
        legacyTo = nil
    }
}

/// The registered disks directory of `vm`, when its failover records none to return to.
func registeredHome(_ vm: String, target: String) -> String? {
    guard let state = try? openTargetStore(target).failoverState(vm), state.reverseTo == nil, state.sourceDisksDir == nil else { return nil }
    return VMRegistry().lookup(vm)?.disksDir
}

/// The subcommand words typed before `vm` ("failover cleanup"), for an error that shows the
/// command again with the option it needs.
func commandWords(before vm: String) -> String {
    let args = Array(CommandLine.arguments.dropFirst())
    let words = args.prefix { $0 != vm }.filter { !$0.hasPrefix("-") }
    return words.isEmpty ? "<command>" : words.joined(separator: " ")
}

/// `--json`: the result as one JSON document on standard output instead of text.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON.") var json = false
}
