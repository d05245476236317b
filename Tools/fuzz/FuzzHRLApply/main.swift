import FuzzSupport
import ReplicaLog
import ReplicaSystem

/// libFuzzer target: the applier on a chain of up to four logs written as files. A chain it
/// accepts must apply, and the image must then hold exactly what the records say (an
/// in-memory model) at the size `LogScan.sizeAfter` predicts; a chain it refuses leaves the
/// image untouched (it is never opened). Errors are single lines.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHRLApply(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let logs = HRLInput.logs(FuzzDriver.bytes(data, size))
    guard !logs.isEmpty else { return 0 }
    let dir = Scratch.fresh("apply")
    var paths: [String] = []
    for (i, log) in logs.enumerated() {
        paths.append(dir + "/log\(i).hrl")
        Scratch.write(log, to: paths[i])
    }
    let image = dir + "/image"
    let initial = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    Scratch.write(initial, to: image)
    let applier: LogApplier
    do {
        applier = try LogApplier(paths: paths)
    } catch let error as ReplicaError {
        guard !error.description.contains("\n") else { Scratch.fail("error spans lines: \(error)") }
        guard Scratch.read(image) == initial else { Scratch.fail("a refused chain changed the image") }
        return 0
    } catch {
        Scratch.fail("unexpected error type \(type(of: error)): \(error)")
    }
    var model = ImageModel(initial)
    var predicted = Int64(initial.count)
    for scan in applier.scans {
        predicted = scan.sizeAfter(predicted)
        do {
            _ = try LogScanner.scan(scan.path) { h, d in model.apply(h, d) }
        } catch {
            Scratch.fail("an accepted log does not scan again: \(error)")
        }
    }
    do {
        try applier.apply(to: image)
    } catch let error as SystemError where model.valid == false {
        _ = error // offsets past what the filesystem takes (EFBIG): refused cleanly
        return 0
    } catch {
        Scratch.fail("an accepted chain failed to apply: \(error)")
    }
    guard model.valid else { return 0 }
    let result = Scratch.read(image)
    guard Int64(result.count) == predicted else { Scratch.fail("image size \(result.count), sizeAfter predicts \(predicted)") }
    guard result == model.bytes else { Scratch.fail("image differs from the records' model (\(result.count) vs \(model.bytes.count) bytes)") }
    return 0
}

@_cdecl("FuzzHRLApply_main")
public func fuzzHRLApplyMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzHRLApply)
}
