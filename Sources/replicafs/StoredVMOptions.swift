import ArgumentParser
import ReplicaStore
import ReplicaSystem

/// The options of every command that acts on a VM in a target store: its name and the store.
struct StoredVMOptions: ParsableArguments {
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Target store: a directory or replicafs://HOST[:PORT].") var target: String
    @Option(help: "PKI directory for a replicafs:// target (default /etc/replicafs/pki).") var pki: String?

    /// How to open the target (its PKI directory).
    var targetOptions: TargetOptions { TargetOptions(pki: pki) }

    func validate() throws {
        guard ProtectedVM.validName(vm) else {
            throw ReplicaError("bad VM name '\(vm)': use letters, digits, '.', '_' and '-'", code: .badRequest)
        }
        guard !target.isEmpty else { throw ReplicaError("--target is empty", code: .badRequest) }
    }
}

/// `--json`: the result as one JSON document on standard output instead of text.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON.") var json = false
}
