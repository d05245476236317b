import ArgumentParser
import Foundation
import ReplicaMount
import ReplicaStore
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

struct PointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "points", abstract: "List a VM's recovery points from the target store alone.")
    @OptionGroup var stored: StoredVMOptions
    var vm: String { stored.vm }
    var target: String { stored.target }
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    struct Row: Codable {
        var id: Int
        var time: String
        var consistency: String
        var cut: UInt64
        var disks: [String: Int64]
        init(_ p: RecoveryPoint) {
            id = p.id
            time = ISOTime.format(nanos: p.timeNanos)
            consistency = p.consistency.rawValue
            cut = p.cut
            disks = p.diskSizes
        }
    }

    func run() throws {
        let rows = try openTargetStore(target, options: stored.targetOptions).points(vm).map(Row.init)
        if json { return try printJSON(rows) }
        if rows.isEmpty { print("\(vm): no recovery points yet") }
        for r in rows { print("\(r.id)\t\(r.time)\t\(r.consistency)\tcut \(r.cut)") }
    }
}
