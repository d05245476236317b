import Foundation
import Testing
import ReplicaTestSupport
@testable import ReplicaSystem
@testable import ReplicaLog

/// Regression tests for what the fuzz targets found (docs/fuzzing.md): each builds the input
/// with the library's own writer and checks the property the fuzz target checks.
@Suite(.timeLimit(.minutes(1)))
struct FuzzFindingsTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "rfs-fuzzfindings-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func header(size: UInt64) -> LogHeader {
        LogHeader(imageName: "d.img", chainID: LogHeader.newChainID(), sequence: 1, firstLSN: 1, createdNanos: 1, imageSize: size)
    }

    /// hrl-apply: "image size 2493, sizeAfter predicts 770048". An empty write record past the
    /// end counted toward the image's size, but applying it extends nothing, so the store's
    /// catalog recorded a size its export did not have.
    @Test func anEmptyWritePastTheEndDoesNotGrowTheImage() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = dir + "/d.img.000001.hrl", image = dir + "/d.img"
        let writer = try DirectLogWriter(path: log, header: header(size: 4096))
        let data = [UInt8](repeating: 7, count: 100)
        try data.withUnsafeBytes { try writer.appendWrite($0.baseAddress!, count: 100, offset: 4000) }
        var none: UInt8 = 0
        try writer.appendWrite(&none, count: 0, offset: 770_048)
        try writer.seal(reason: .rotation, cutID: 1)
        FileManager.default.createFile(atPath: image, contents: Data(repeating: 1, count: 4096))
        let scan = try LogScanner.scan(log)
        #expect(scan.tail == .clean && scan.recordCount == 2)
        try LogApplier(paths: [log]).apply(to: image)
        let applied = try #require(FileManager.default.attributesOfItem(atPath: image)[.size] as? Int64)
        #expect(applied == 4100)
        #expect(scan.sizeAfter(4096) == applied, "sizeAfter \(scan.sizeAfter(4096)), image \(applied)")
    }

    /// hrl-apply: "error spans lines". A header's image name may hold a newline; the applier's
    /// foreign-log error quoted it raw and became two lines.
    @Test func aForeignLogErrorStaysOneLineWhateverTheImageName() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var paths: [String] = []
        for (i, name) in ["a\nb.img", "other.img"].enumerated() {
            let h = LogHeader(imageName: name, chainID: LogHeader.newChainID(), sequence: UInt64(i + 1), firstLSN: 1, createdNanos: 1, imageSize: 0)
            let writer = try DirectLogWriter(path: dir + "/log\(i).hrl", header: h)
            try writer.seal(reason: .rotation, cutID: 1)
            paths.append(dir + "/log\(i).hrl")
        }
        do {
            _ = try LogApplier(paths: paths)
            Issue.record("logs of two images were accepted as one chain")
        } catch let error as ReplicaError {
            #expect(error.description.contains("foreign log"), "\(error)")
            #expect(!error.description.contains("\n"), "the error spans lines: \(error)")
        }
    }
}
