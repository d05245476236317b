import Foundation
import FuzzSupport
import ReplicaControl

/// libFuzzer target: the control protocol's decoders, as the daemon reads a request line and
/// a command reads a response line. Whatever decodes must encode and decode again to the same
/// JSON (nothing read is lost or invented on the way).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlDecode(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let line = Data(FuzzDriver.bytes(data, size))
    roundTrip(ControlRequest.self, line)
    roundTrip(ControlResponse.self, line)
    return 0
}

func roundTrip<T: Codable>(_ type: T.Type, _ line: Data) {
    guard let value = try? JSONDecoder().decode(T.self, from: line) else { return }
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    do {
        let once = try encoder.encode(value)
        let twice = try encoder.encode(try JSONDecoder().decode(T.self, from: once))
        guard once == twice else { Scratch.fail("\(T.self) does not round-trip") }
    } catch {
        Scratch.fail("\(T.self) decoded but does not round-trip: \(error)")
    }
}

@_cdecl("FuzzControlDecode_main")
public func fuzzControlDecodeMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    FuzzDriver.run(argc, argv, fuzzControlDecode)
}
