import Foundation

/// A request to a running mount daemon over its control socket (one JSON line each way).
public struct ControlRequest: Codable, Sendable {
    public enum Operation: String, Codable, Sendable { case rotate, status, ping }
    public var op: Operation
    public init(op: Operation) { self.op = op }
}

/// The daemon's answer: `error` set on failure, otherwise the fields of the operation.
public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var rotation: DiskSet.Rotation?
    public var status: MountStatus?

    public init(ok: Bool, error: String? = nil, rotation: DiskSet.Rotation? = nil, status: MountStatus? = nil) {
        self.ok = ok
        self.error = error
        self.rotation = rotation
        self.status = status
    }
}

/// What a running mount reports about itself.
public struct MountStatus: Codable, Sendable {
    public var pid: Int32
    public var mountpoint: String
    public var disksDir: String
    public var writebackCache: Bool
    public var images: [ImageState]

    public init(pid: Int32, mountpoint: String, disksDir: String, writebackCache: Bool, images: [ImageState]) {
        self.pid = pid
        self.mountpoint = mountpoint
        self.disksDir = disksDir
        self.writebackCache = writebackCache
        self.images = images
    }
}
