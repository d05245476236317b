import Foundation

/// A request to a running mount daemon over its control socket (one JSON line each way).
public struct ControlRequest: Codable, Sendable {
    public enum Operation: String, Codable, Sendable { case rotate, status, ping, snapshot, resync }
    public var op: Operation
    /// For `snapshot`: the VM and whether to quiesce first.
    public var vm: String?
    public var appConsistent: Bool?
    /// For `resync`: run it now instead of in the policy's window.
    public var now: Bool?
    public init(op: Operation, vm: String? = nil, appConsistent: Bool? = nil, now: Bool? = nil) {
        self.op = op
        self.vm = vm
        self.appConsistent = appConsistent
        self.now = now
    }
}

/// The daemon's answer: `error` set on failure, otherwise the fields of the operation.
public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var rotation: DiskSet.Rotation?
    public var status: MountStatus?
    public var point: RecoveryPoint?
    public var resync: ResyncOutcome?

    public init(ok: Bool, error: String? = nil, rotation: DiskSet.Rotation? = nil, status: MountStatus? = nil,
                point: RecoveryPoint? = nil, resync: ResyncOutcome? = nil) {
        self.resync = resync
        self.ok = ok
        self.error = error
        self.rotation = rotation
        self.status = status
        self.point = point
    }
}

/// What a running mount reports about itself.
public struct MountStatus: Codable, Sendable {
    public var pid: Int32
    public var mountpoint: String
    public var disksDir: String
    public var writebackCache: Bool
    public var images: [ImageState]
    public var vms: [Replicator.VMState] = []

    public init(pid: Int32, mountpoint: String, disksDir: String, writebackCache: Bool, images: [ImageState]) {
        self.pid = pid
        self.mountpoint = mountpoint
        self.disksDir = disksDir
        self.writebackCache = writebackCache
        self.images = images
    }
}
