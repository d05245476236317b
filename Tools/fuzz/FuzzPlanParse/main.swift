import FuzzSupport
import ReplicaEngine
import ReplicaSystem

/// libFuzzer target: the recovery plan parser on any text. A plan is either refused with one
/// line naming the file, or parsed into groups whose VMs all have a unique name, a target and
/// an absolute mountpoint, and a point the parser itself accepts.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlanParse(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let text = String(validating: FuzzDriver.bytes(data, size), as: UTF8.self) else { return 0 }
    let plan: RecoveryPlan
    do {
        plan = try RecoveryPlan.parse(text, source: "fuzz.yaml", baseDirectory: "/plans")
    } catch let error as ReplicaError {
        let message = error.description
        guard !message.contains(where: \.isNewline) else { Scratch.fail("error spans lines: \(message.debugDescription)") }
        guard message.hasPrefix("fuzz.yaml") else { Scratch.fail("error does not name the file: \(message)") }
        return 0
    } catch {
        Scratch.fail("unexpected error type \(type(of: error)): \(error)")
    }
    guard !plan.name.isEmpty, !plan.groups.isEmpty else { Scratch.fail("a plan with no name or no groups was accepted") }
    var names: Set<String> = []
    for vm in plan.allVMs {
        guard names.insert(vm.name).inserted else { Scratch.fail("VM \(vm.name) accepted twice") }
        guard !vm.target.isEmpty, vm.mount.hasPrefix("/") else { Scratch.fail("VM \(vm.name) has no target or a relative mount") }
        guard !vm.point.isEmpty else { Scratch.fail("VM \(vm.name) has no point") }
    }
    return 0
}

@_cdecl("FuzzPlanParse_main")
public func fuzzPlanParseMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzPlanParse)
}
