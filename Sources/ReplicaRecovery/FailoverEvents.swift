import Foundation
import ReplicaEngine
import ReplicaStore
import ReplicaSystem

/// Where the failover commands record a VM's events: beside its policy in the original
/// site's disks directory when that is on this host (so `replicafs events` shows the
/// failover among the replication events), otherwise in this host's event directory
/// (`EventLog.host()`: a DR site that holds only the store).
enum FailoverEvents {
    static func log(for state: FailoverState?, disksDir: String? = nil) -> EventLog {
        for dir in [disksDir, state?.reverseTo, state?.sourceDisksDir].compactMap({ $0 }) where FileSystem.isDirectory(dir) {
            return EventLog(disksDir: dir)
        }
        return EventLog.host()
    }

    static func record(_ state: FailoverState?, vm: String, _ kind: EventLog.Kind, level: Health = .normal, _ message: String,
                       point: Int? = nil, bytes: Int64? = nil, disksDir: String? = nil) {
        log(for: state, disksDir: disksDir).record(.init(vm: vm, kind: kind, level: level, message: message, point: point, bytes: bytes))
    }
}
