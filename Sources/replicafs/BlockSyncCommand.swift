import ArgumentParser
import Foundation
import ReplicaStore
import ReplicaSystem

/// `replicafs blocksync <src> <dst>` (development and benchmarks): the resync engine on two
/// plain files, so it can be timed against rsync on the same pair.
struct BlockSyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blocksync", abstract: "Make <dst> equal to <src>, writing only blocks whose SHA-256 differs.",
        shouldDisplay: false)
    @Argument(help: "Source file.") var source: String
    @Argument(help: "Target file (created if missing).") var target: String
    @Option(help: "Block size in bytes.") var blockSize = 1 << 20
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        guard blockSize > 0 && blockSize <= 64 << 20 else { throw ReplicaError("bad --block-size \(blockSize): use 1 byte to 64 MiB") }
        guard FileSystem.exists(source) else { throw ReplicaError("source \(source) does not exist") }
        let report = try BlockSync(blockSize: blockSize).sync(from: source, to: target)
        if json { return try printJSON(report) }
        print(String(format: "%d of %d blocks differed: sent %lld bytes, compared %lld, in %.3f s",
                     report.differingBlocks, report.blocks, report.bytesSent, report.bytesCompared, report.seconds))
    }
}
