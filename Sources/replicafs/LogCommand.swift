import ArgumentParser
import Foundation
import ReplicaLog
import ReplicaSystem

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log", abstract: "Inspect and replay HRL change logs.",
        subcommands: [Show.self, Apply.self])

    /// What `log show --json` prints.
    struct Report: Codable {
        var path: String
        var image: String
        var chain: String
        var sequence: UInt64
        var firstLSN: UInt64
        var lastLSN: UInt64
        var created: String
        var imageSizeAtOpen: UInt64
        var records: UInt64
        var dataBytes: UInt64
        var ranges: [[UInt64]]
        var rangeBytes: UInt64
        var sizeChanges: [UInt64]
        var markers: [MarkerReport]
        var sealed: Bool
        var sealReason: String?
        var cut: UInt64?
        var tail: String
        var tailOffset: Int64?
        var tailReason: String?
    }

    struct MarkerReport: Codable {
        var lsn: UInt64
        var kind: String
        var cut: UInt64
        var time: String
        var label: String
    }

    static func timeString(_ nanos: UInt64) -> String {
        ISOTime.format(nanos: nanos)
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a log's header, records, byte ranges, markers, and whether it is sealed or torn.")

        @Argument(help: "An .hrl file.")
        var log: String

        @Flag(help: "Print JSON.")
        var json = false

        func run() throws {
            let scan = try LogScanner.scan(log)
            var tail = "clean"
            var tailOffset: Int64?
            var tailReason: String?
            switch scan.tail {
            case .clean: break
            case .torn(let o, let r): (tail, tailOffset, tailReason) = ("torn", o, r)
            case .corrupt(let o, let r): (tail, tailOffset, tailReason) = ("corrupt", o, r)
            }
            let report = Report(
                path: log, image: scan.header.imageName, chain: scan.header.chainHex, sequence: scan.header.sequence,
                firstLSN: scan.header.firstLSN, lastLSN: scan.lastLSN, created: LogCommand.timeString(scan.header.createdNanos),
                imageSizeAtOpen: scan.header.imageSize, records: scan.recordCount, dataBytes: scan.dataBytes,
                ranges: scan.ranges.ranges.map { [$0.lowerBound, $0.upperBound] }, rangeBytes: scan.ranges.totalBytes,
                sizeChanges: scan.sizeChanges,
                markers: scan.markers.map { MarkerReport(lsn: $0.lsn, kind: $0.marker.kind.description, cut: $0.marker.cutID,
                                                         time: LogCommand.timeString($0.marker.timeNanos), label: $0.marker.label) },
                sealed: scan.isSealed, sealReason: scan.seal?.reason.description, cut: scan.seal?.cutID,
                tail: tail, tailOffset: tailOffset, tailReason: tailReason)
            // A corrupt log (damage or crafted numbers, not a crash's torn tail) fails the command.
            let corrupt = tail == "corrupt" ? ReplicaError("\(log): corrupt record at byte \(tailOffset!): \(tailReason!)") : nil
            if json {
                try printJSON(report)
                if let corrupt { throw corrupt }
                return
            }
            print("log:        \(log)")
            print("image:      \(report.image) (chain \(report.chain))")
            print("sequence:   \(report.sequence), LSN \(report.firstLSN)...\(report.lastLSN), created \(report.created)")
            print("records:    \(report.records), \(report.dataBytes) bytes of write data")
            print("ranges:     \(report.ranges.count) range(s), \(report.rangeBytes) bytes covered")
            for r in report.ranges.prefix(20) { print("            [\(r[0]), \(r[1]))") }
            if report.ranges.count > 20 { print("            ... \(report.ranges.count - 20) more (--json lists all)") }
            if !report.sizeChanges.isEmpty { print("sizes set:  \(report.sizeChanges.map(String.init).joined(separator: ", "))") }
            for m in report.markers {
                print("marker:     \(m.kind) at LSN \(m.lsn), cut \(m.cut), \(m.time)\(m.label.isEmpty ? "" : ": \(m.label)")")
            }
            if report.sealed {
                print("state:      sealed (\(report.sealReason ?? "")), cut \(report.cut ?? 0)")
            } else {
                print("state:      open (not sealed)")
            }
            switch tail {
            case "torn": print("tail:       TORN at byte \(tailOffset!): \(tailReason!) (cut off at the next mount)")
            case "corrupt": print("tail:       CORRUPT at byte \(tailOffset!): \(tailReason!)")
            default: print("tail:       clean")
            }
            if let corrupt { throw corrupt }
        }
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a chain of logs, then replay them in sequence order onto an image.",
            discussion: "Nothing is written unless every checksum verifies, the logs form one chain of one image without gaps, and no log has a torn tail.")

        @Argument(help: "The .hrl files, in any order.")
        var logs: [String]

        @Option(help: "The image to apply them to (a copy of the disk as of the first log's start).")
        var to: String

        func run() throws {
            guard FileSystem.exists(to) else { throw ReplicaError("target image \(to) does not exist") }
            let applier = try LogApplier(paths: logs)
            let result = try applier.apply(to: to)
            print("applied \(result.records) records (\(result.dataBytes) bytes of writes) from \(result.logs) log(s) to \(to)")
        }
    }
}
