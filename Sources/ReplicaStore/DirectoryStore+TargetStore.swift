import Foundation
import ReplicaLog
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The local directory store as a `TargetStore`: the source's files are read where they lie
/// (direct I/O copies, holes skipped), and everything else maps onto the directory layout of
/// docs/target-store.md, which stays private to this type.
extension DirectoryStore: TargetStore {
    public var location: String { root }

    @discardableResult
    public func seed(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition],
                     progress: ((Int64) -> Void)?) throws -> Int64 {
        try seed(vm: vm, sources: SourceFile.paths(sources), chains: chains, progress: progress)
    }

    /// The logs are read where they lie at commit (same host: nothing crosses a network, so
    /// `compress` changes nothing here; a receiver compresses on the wire).
    public func receive(vm: String, logs: [String: [SourceFile]], compress: Bool) throws -> (logs: [String: [SourceFile]], bytesSent: Int64) {
        (logs, try logs.values.joined().reduce(Int64(0)) { $0 + (try $1.size()) })
    }

    public func discardReceived(vm: String) {
        let incoming = incomingDirectory(vm)
        for name in (try? FileSystem.list(incoming)) ?? [] { try? FileSystem.remove(incoming + "/" + name) }
    }

    func incomingDirectory(_ vm: String) -> String { vmDirectory(vm) + "/incoming" }

    /// Where a receiver in front of this store stages a VM's uploaded logs: a commit of files
    /// there verifies them in place and renames them into the point instead of copying them.
    public func stagingDirectory(vm: String) -> String { incomingDirectory(vm) }

    @discardableResult
    public func commit(vm: String, logs: [String: [SourceFile]], consistency: RecoveryPoint.Consistency,
                       cut: UInt64, timeNanos: UInt64) throws -> RecoveryPoint {
        try commit(vm: vm, logs: SourceFile.paths(logs), consistency: consistency, cut: cut, timeNanos: timeNanos)
    }

    public func openPoint(vm: String, disk: String, point: PointSelector?) throws -> any PointReader {
        try requireVM(vm)
        let id = try point.map { try resolve($0, in: catalog(vm), vm: vm).id }
        return try PointView(store: self, vm: vm, disk: disk, pointID: id)
    }

    public func verify(vm: String, sources: [String: SourceFile], point: PointSelector?, blockSize: Int) throws -> [String: [Range<Int64>]] {
        try verify(vm: vm, sources: SourceFile.paths(sources), point: point, blockSize: blockSize)
    }

    @discardableResult
    public func resync(vm: String, sources: [String: SourceFile], chains: [String: ChainPosition], reason: String?,
                       blockSize: Int, progress: ((BlockSync.Progress) -> Void)?) throws -> ResyncReport {
        try resync(vm: vm, sources: SourceFile.paths(sources), chains: chains, reason: reason, blockSize: blockSize, progress: progress)
    }

    public func rebase(vm: String, sources: [String: SourceFile], blockSize: Int) throws -> (RecoveryPoint, Int64) {
        try rebase(vm: vm, sources: SourceFile.paths(sources), blockSize: blockSize)
    }

    public func localFailoverDirectory(vm: String) -> String? { failoverDirectory(vm) }

    func metadataPath(_ vm: String) -> String { vmDirectory(vm) + "/vm.json" }

    /// `<vm>/vm.json`; nil when the store has none (never protected, or protected before
    /// networks were recorded).
    public func metadata(vm: String) throws -> VMMetadata? {
        let path = metadataPath(vm)
        guard FileSystem.exists(path) else { return nil }
        do {
            return try JSONDecoder().decode(VMMetadata.self, from: Data(try FileSystem.readFile(path)))
        } catch {
            throw ReplicaError("\(path): unreadable VM metadata (\(error))")
        }
    }

    /// Writes `<vm>/vm.json` atomically, creating the VM's directory if needed.
    public func saveMetadata(_ metadata: VMMetadata) throws {
        try FileSystem.mkdirs(vmDirectory(metadata.vm))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(metadata).withUnsafeBytes { try FileSystem.writeAtomically(metadataPath(metadata.vm), $0) }
    }
}
