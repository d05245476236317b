import Foundation
import ReplicaSystem
import ReplicaEngine
import ReplicaSource
import ReplicaStore

/// A request to a running mount daemon over its control socket (one JSON line each way).
public struct ControlRequest: Codable, Sendable {
    public enum Operation: String, Codable, Sendable {
        case rotate, status, ping, snapshot
        /// Protected mounts: clear a VM's Critical state and retry at once.
        case resume
        /// Failover mounts: refuse further writes (after flushing), for a failback's final copy.
        case freeze
        /// Failover mounts: take writes again (an abandoned failback).
        case unfreeze
        /// Failover mounts: start logging every change for reverse replication (the cut).
        case reprotect
        /// Failover mounts: ship the reverse logs to the original site now.
        case ship
        /// Protected mounts: resynchronize a VM by block checksums (now, or in its window).
        case resync
    }
    public var op: Operation
    /// For `snapshot` and `resume`: the VM; for `snapshot`, whether to quiesce first.
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
    public var failover: FailoverStatus?
    /// For `ship`: the data bytes applied at the original site.
    public var shippedBytes: Int64?
    public var resync: ResyncOutcome?

    public init(ok: Bool, error: String? = nil, rotation: DiskSet.Rotation? = nil, status: MountStatus? = nil,
                point: RecoveryPoint? = nil, failover: FailoverStatus? = nil, resync: ResyncOutcome? = nil) {
        self.resync = resync
        self.ok = ok
        self.error = error
        self.rotation = rotation
        self.status = status
        self.point = point
        self.failover = failover
    }
}

/// What a running mount reports about itself.
public struct MountStatus: Codable, Sendable {
    public var pid: Int32
    public var mountpoint: String
    public var disksDir: String
    public var writebackCache: Bool
    public var images: [ImageState]
    public var vms: [VMState] = []
    /// Entries of the disks directory not served (`DiskEntries`), with the reason.
    public var skipped: [DiskEntries.Skipped]?

    public init(pid: Int32, mountpoint: String, disksDir: String, writebackCache: Bool, images: [ImageState]) {
        self.pid = pid
        self.mountpoint = mountpoint
        self.disksDir = disksDir
        self.writebackCache = writebackCache
        self.images = images
    }
}

/// What a running failover mount reports about itself.
public struct FailoverStatus: Codable, Sendable {
    public struct Disk: Codable, Sendable {
        public var name: String
        public var size: Int64
        /// Bytes written since the failover (whole 4 KiB blocks).
        public var writtenBytes: Int64
        /// Redo log bytes mapped to present the point.
        public var overlayBytes: Int
        /// Changes refused since the disk was frozen for failback.
        public var refusedWrites: Int
        public init(name: String, size: Int64, writtenBytes: Int64, overlayBytes: Int, refusedWrites: Int) {
            self.name = name
            self.size = size
            self.writtenBytes = writtenBytes
            self.overlayBytes = overlayBytes
            self.refusedWrites = refusedWrites
        }
    }
    public var pid: Int32
    public var vm: String
    public var store: String
    public var kind: String
    public var point: Int
    public var mountpoint: String
    public var frozen: Bool
    public var disks: [Disk]
    /// Reverse replication to the original site, once reprotected.
    public var reverse: ReverseReplicationStatus?
    public init(pid: Int32, vm: String, store: String, kind: String, point: Int, mountpoint: String, frozen: Bool, disks: [Disk]) {
        self.pid = pid
        self.vm = vm
        self.store = store
        self.kind = kind
        self.point = point
        self.mountpoint = mountpoint
        self.frozen = frozen
        self.disks = disks
    }
}
