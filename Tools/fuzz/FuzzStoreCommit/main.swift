import FuzzSupport
import ReplicaLog
import ReplicaStore
import ReplicaSystem

/// libFuzzer target: the store's acceptance of shipped logs. Each input's logs are committed
/// into a fresh scratch store holding one VM with one 8 KiB disk. The store must accept them
/// exactly when they form a verified, sealed chain (what `LogApplier` accepts); a refused
/// commit leaves no point, no pending directory and the base unchanged; an accepted one makes
/// a point whose export holds exactly what the records say, at the size the catalog records.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStoreCommit(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let logs = HRLInput.logs(FuzzDriver.bytes(data, size))
    guard !logs.isEmpty else { return 0 }
    let dir = Scratch.fresh("commit")
    let seedPath = dir + "/seed"
    let initial = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
    Scratch.write(initial, to: seedPath)
    let root = dir + "/store"
    let store: DirectoryStore
    do {
        try FileSystem.mkdirs(root)
        store = try DirectoryStore(root: root)
        try store.create(vm: "vm", seeds: [(disk: "disk0", path: seedPath)])
    } catch {
        Scratch.fail("cannot make the scratch store: \(error)")
    }
    var paths: [String] = []
    for (i, log) in logs.enumerated() {
        paths.append(dir + "/shipped\(i).hrl")
        Scratch.write(log, to: paths[i])
    }
    // What the store must do: accept exactly a verified chain of sealed logs.
    var model = ImageModel(initial)
    var predicted = Int64(initial.count)
    var acceptable = false
    if let applier = try? LogApplier(paths: paths), applier.scans.allSatisfy(\.isSealed) {
        acceptable = true
        for scan in applier.scans {
            predicted = scan.sizeAfter(predicted)
            _ = try? LogScanner.scan(scan.path) { h, d in model.apply(h, d) }
        }
    }
    let point: RecoveryPoint
    do {
        point = try store.commit(vm: "vm", logs: ["disk0": paths], consistency: .crash, cut: 1)
    } catch let error as ReplicaError {
        guard !error.description.contains("\n") else { Scratch.fail("error spans lines: \(error)") }
        if acceptable { Scratch.fail("a verified sealed chain was refused: \(error)") }
        guard (try? store.points("vm"))?.isEmpty == true else { Scratch.fail("a refused commit left a point") }
        guard Scratch.read(root + "/vm/base/disk0") == initial else { Scratch.fail("a refused commit changed the base") }
        let left = (try? FileSystem.list(root + "/vm/points")) ?? []
        guard left.isEmpty else { Scratch.fail("a refused commit left \(left)") }
        return 0
    } catch {
        Scratch.fail("unexpected error type \(type(of: error)): \(error)")
    }
    guard acceptable else { Scratch.fail("the store accepted logs the applier refuses (or unsealed ones)") }
    guard point.diskSizes["disk0"] == predicted else { Scratch.fail("point size \(String(describing: point.diskSizes["disk0"])), expected \(predicted)") }
    guard Scratch.read(root + "/vm/base/disk0") == initial else { Scratch.fail("a commit changed the base") }
    guard model.valid else { return 0 }
    let exported = dir + "/export"
    do {
        try store.export(vm: "vm", point: .id(point.id), disk: "disk0", to: exported)
    } catch {
        Scratch.fail("the committed point does not export: \(error)")
    }
    guard Scratch.read(exported) == model.bytes else { Scratch.fail("the exported point differs from the records' model") }
    return 0
}

@_cdecl("FuzzStoreCommit_main")
public func fuzzStoreCommitMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzStoreCommit)
}
