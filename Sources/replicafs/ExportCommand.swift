import ArgumentParser
import Foundation
import ReplicaMount
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write one disk of a VM as of a recovery point to a file.")
    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @Option(help: "A point id, latest or latest-app.") var point: String
    @Option(help: "The disk (image name).") var disk: String
    @Option(help: "The file to write.") var to: String

    func run() throws {
        let selector = try PointSelector(point)
        guard !FileSystem.exists(to) else { throw ReplicaError("\(to) already exists: export will not overwrite it") }
        let p = try openTargetStore(target, options: stored.targetOptions).export(vm: vm, point: selector, disk: disk, to: to)
        print("exported \(disk) of \(vm) at point \(p.id) to \(to)")
    }
}
