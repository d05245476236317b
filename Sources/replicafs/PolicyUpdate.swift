import Foundation
import ReplicaControl
import ReplicaStore
import ReplicaSystem

/// A protected VM whose policy `protect --update` or `policy apply` changed.
struct PolicyUpdate {
    var vm: ProtectedVM
    var disksDir: String
    /// "copy frequency 5m -> 30s, ..." (empty when nothing changed).
    var changes: String

    /// Changes the policy of protected VM `name` in `given` (default: its registered disks
    /// directory) to what `change` makes of it. The new policy is checked against the seeds'
    /// limits before anything is written; the VM's file is then replaced atomically, and the
    /// store's copy of the VM's metadata follows (best effort: a store out of reach keeps the
    /// old one). Its disks, target, replica and points stay.
    static func apply(_ name: String, disksDir given: String?, command: String,
                      _ change: (ReplicationPolicy) throws -> ReplicationPolicy) throws -> PolicyUpdate {
        let dir: String
        if let given {
            guard FileSystem.isDirectory(given) else { throw ReplicaError("disks directory \(given) does not exist") }
            dir = try FileSystem.realPath(given)
        } else {
            let entry = try VMRegistry().require(name, for: command, option: "--disks-dir <dir>")
            guard let registered = entry.disksDir else {
                throw ReplicaError("VM \(name) has no disks directory on this host (only its store \(entry.target) is known): run `replicafs \(command)` where it is protected, or give --disks-dir")
            }
            dir = registered
        }
        guard var vm = ProtectedVM.all(disksDir: dir).first(where: { $0.name == name }) else {
            throw ReplicaError("VM \(name) is not protected in \(dir): `replicafs protect \(name) --disks-dir \(dir) --disk <img> --target <store>` protects it")
        }
        let old = vm.policy
        vm.policy = try change(old)
        try vm.policy.validateRules()
        if vm.policy != old {
            try vm.save(disksDir: dir)
            do {
                try openTargetStore(vm.target, options: vm.storeOptions).saveMetadata(VMMetadata(vm))
            } catch {
                FileHandle.standardError.write(Data("replicafs: the store \(vm.target) keeps the old policy of \(name) for now: \(describe(error))\n".utf8))
            }
        }
        return PolicyUpdate(vm: vm, disksDir: dir, changes: vm.policy.changes(from: old))
    }
}
