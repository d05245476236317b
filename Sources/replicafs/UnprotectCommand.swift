import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaMount
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

struct UnprotectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unprotect", abstract: "End a VM's protection.")
    @Argument(help: "VM name.") var vm: String
    @Option(help: "Directory holding the VM's images (default: the one this host registered for the VM).") var disksDir: String?
    @Flag(help: "Also delete the replica and its recovery points from the target store.") var deleteReplica = false
    @OptionGroup var output: OutputOptions

    func run() throws {
        let registry = VMRegistry()
        guard let disksDir = disksDir ?? registry.lookup(vm)?.disksDir else {
            throw registry.lookup(vm) == nil ? VMRegistry.notRegistered(vm, command: "unprotect", option: "--disks-dir <dir>")
                : ReplicaError("VM \(vm) has no disks directory on this host: give --disks-dir")
        }
        let dir = try FileSystem.realPath(disksDir)
        guard let config = ProtectedVM.all(disksDir: dir).first(where: { $0.name == vm }) else {
            throw ReplicaError("unknown VM \(vm): not protected in \(dir)")
        }
        if deleteReplica, let store = try? openTargetStore(config.target), let failover = store.failoverState(vm) {
            throw ReplicaError("VM \(vm) is failed over (\(failover.summary)): its replica stays until failback or cleanup")
        }
        try FileSystem.remove(ProtectedVM.path(disksDir: dir, vm: vm))
        try FileSystem.remove(ResyncScheduler.requirementPath(disksDir: dir, vm: vm))
        if deleteReplica { try openTargetStore(config.target).delete(vm: vm) }
        if registry.lookup(vm)?.failover == nil { try registry.remove(vm) }
        if output.json {
            struct Result: Encodable { var vm: String, disksDir: String, target: String, replicaDeleted: Bool }
            return try printJSON(Result(vm: vm, disksDir: dir, target: config.target, replicaDeleted: deleteReplica))
        }
        print("unprotected \(vm)\(deleteReplica ? " and deleted its replica" : "")")
    }
}
