import FuzzSupport
import ReplicaSystem
import ReplicaLog

/// libFuzzer target: the HRL scanner on one log. Beyond "no crash": the valid prefix of any
/// input (up to `validEnd`) scans clean with exactly the same records, a clean scan ends at
/// the file's end, and the counts agree with the records visited.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHRLScan(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let logs = HRLInput.logs(FuzzDriver.bytes(data, size))
    for log in logs { check(log) }
    return 0
}

struct Seen: Equatable {
    var header: RecordHeader
    var dataCRC: UInt32
}

func check(_ log: [UInt8]) {
    var seen: [Seen] = []
    let scan: LogScan
    do {
        scan = try log.withUnsafeBytes { raw in
            try LogScanner.scan(raw, path: "fuzz.hrl") { h, d in seen.append(Seen(header: h, dataCRC: Checksum.crc32c(d))) }
        }
    } catch let error as ReplicaError {
        // Only the header may be refused outright, and only for a header that is not valid.
        guard !String(describing: error).contains("\n") else { Scratch.fail("error spans lines: \(error)") }
        let valid = log.withUnsafeBytes { (try? LogHeader.decode($0, path: "fuzz.hrl")) != nil }
        if valid { Scratch.fail("valid header but scan threw \(error)") }
        return
    } catch {
        Scratch.fail("unexpected error type \(type(of: error)): \(error)")
    }
    guard scan.validEnd >= Int64(LogHeader.size), scan.validEnd <= Int64(log.count) else { Scratch.fail("validEnd \(scan.validEnd) out of range") }
    if scan.tail == .clean, scan.validEnd != Int64(log.count) { Scratch.fail("clean tail but validEnd \(scan.validEnd) != \(log.count)") }
    let nonSeal = UInt64(seen.filter { $0.header.type != .seal }.count)
    guard scan.recordCount == nonSeal else { Scratch.fail("recordCount \(scan.recordCount) but \(nonSeal) visited") }
    guard scan.nextLSN == scan.header.firstLSN + UInt64(seen.count) else { Scratch.fail("nextLSN \(scan.nextLSN) after \(seen.count) records") }
    guard scan.isSealed == (seen.last?.header.type == .seal) else { Scratch.fail("seal state disagrees with the records") }
    // The valid prefix is a clean log holding the same records: what a repair keeps.
    var again: [Seen] = []
    let prefix = Array(log[0..<Int(scan.validEnd)])
    let rescan: LogScan
    do {
        rescan = try prefix.withUnsafeBytes { raw in
            try LogScanner.scan(raw, path: "fuzz.hrl") { h, d in again.append(Seen(header: h, dataCRC: Checksum.crc32c(d))) }
        }
    } catch {
        Scratch.fail("the valid prefix does not scan: \(error)")
    }
    guard rescan.tail == .clean else { Scratch.fail("the valid prefix is not clean: \(rescan.tail)") }
    guard again == seen else { Scratch.fail("the valid prefix reads \(again.count) records, the log \(seen.count)") }
    guard rescan.ranges == scan.ranges, rescan.sizeChanges == scan.sizeChanges,
          rescan.writeEndAfterLastSize == scan.writeEndAfterLastSize, rescan.dataBytes == scan.dataBytes else {
        Scratch.fail("the valid prefix summarizes differently")
    }
}

@_cdecl("FuzzHRLScan_main")
public func fuzzHRLScanMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzHRLScan)
}
