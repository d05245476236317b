import ArgumentParser
import Foundation
import ReplicaControl
import ReplicaMount
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// `replicafs verify`: block checksums of the source disks against the replica or a point.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare block checksums of a VM's source disks and its replica (or a point's export).",
        discussion: "Exits 1 when any range differs. The images are read in disks-dir as they are on disk: pause writes and cut a point (snapshot --wait) first for a meaningful answer on a live VM.")
    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @Option(help: "Directory holding the source images (default: the one this host registered for the VM).") var disksDir: String?
    @Option(help: "A point id, latest or latest-app (default: the replica as it is).") var point: String?
    @Option(help: "Block size in bytes.") var blockSize = 1 << 20
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    struct Row: Codable {
        struct Span: Codable { var offset: Int64; var length: Int64 }
        var disk: String
        var equal: Bool
        var differingBytes: Int64
        var ranges: [Span]
    }

    func validate() throws {
        guard blockSize >= 4096, blockSize <= 64 << 20, blockSize % 4096 == 0 else {
            throw ReplicaError("bad --block-size \(blockSize): a multiple of 4096 from 4 KiB to 64 MiB", code: .badRequest)
        }
    }

    func run() throws {
        let selector = try point.map(PointSelector.init)
        guard blockSize > 0 && blockSize <= 64 << 20 else { throw ReplicaError("bad --block-size \(blockSize): use 1 byte to 64 MiB") }
        guard let disksDir = disksDir ?? VMRegistry().lookup(vm)?.disksDir else {
            throw ReplicaError("the disks directory of VM \(vm) is not known on this host: give --disks-dir")
        }
        guard FileSystem.isDirectory(disksDir) else { throw ReplicaError("disks directory \(disksDir) does not exist") }
        let store = try openTargetStore(target, options: stored.targetOptions)
        let disks = try store.catalog(vm).disks.map(\.name)
        var sources: [String: SourceFile] = [:]
        for disk in disks {
            let path = disksDir + "/" + disk
            guard FileSystem.exists(path) else { throw ReplicaError("disk \(disk) of VM \(vm) is not in \(disksDir)") }
            sources[disk] = SourceFile(path)
        }
        let result = try store.verify(vm: vm, sources: sources, point: selector, blockSize: blockSize)
        let rows = disks.map { disk in
            let ranges = result[disk] ?? []
            return Row(disk: disk, equal: ranges.isEmpty, differingBytes: ranges.reduce(Int64(0)) { $0 + Int64($1.count) },
                       ranges: ranges.map { Row.Span(offset: $0.lowerBound, length: Int64($0.count)) })
        }
        if json {
            try printJSON(rows)
        } else {
            for r in rows {
                if r.equal { print("\(r.disk): equal"); continue }
                let spans = r.ranges.prefix(20).map { "\($0.offset)+\($0.length)" }.joined(separator: " ")
                print("\(r.disk): \(r.ranges.count) ranges differ (\(r.differingBytes) bytes): \(spans)\(r.ranges.count > 20 ? " ..." : "")")
            }
        }
        if rows.contains(where: { !$0.equal }) { Foundation.exit(1) }
    }
}
