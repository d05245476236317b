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
    @OptionGroup var output: OutputOptions

    func run() throws {
        let selector = try PointSelector(point)
        guard !FileSystem.exists(to) else { throw ReplicaError("\(to) already exists: export will not overwrite it") }
        let reporter = ProgressReporter()
        let p = try openTargetStore(target, options: stored.targetOptions).export(vm: vm, point: selector, disk: disk, to: to) { done, total in
            reporter.update("export \(disk)", done: done, total: total)
        }
        reporter.finish()
        if output.json {
            struct Result: Encodable { var vm: String, disk: String, point: Int, consistency: String, time: String, to: String, sizeBytes: Int64 }
            return try printJSON(Result(vm: vm, disk: disk, point: p.id, consistency: p.consistency.rawValue, time: ISOTime.format(nanos: p.timeNanos),
                                        to: to, sizeBytes: Int64(try FileSystem.stat(to).st_size)))
        }
        print("exported \(disk) of \(vm) at point \(p.id) to \(to)")
    }
}
