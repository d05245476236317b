import Foundation
import ReplicaStore

extension Replicator {
    /// When `vm` is failed over in its store (planned or unplanned, not a test), records the
    /// state `failed over` with what to run next and returns true: no cycle runs (the store
    /// refuses replication until failback). Otherwise clears a state left from before.
    func noteFailover(_ vm: ProtectedVM, _ store: any TargetStore) -> Bool {
        guard let failover = store.failoverState(vm.name), failover.kind != .test else {
            update(vm.name) { s in
                if s.state == .failedOver {
                    s.state = store.hasVM(vm.name) ? .protected : .initialReplication
                    s.failover = nil
                    s.nextStep = nil
                }
            }
            return false
        }
        let target = store.location, dir = disks.directory
        let next: String
        if let to = failover.reverseTo {
            next = "reverse replication runs towards \(to); fail back with `replicafs failback \(vm.name) --target \(target) --mode minimize-downtime`"
        } else {
            next = "unmount this disks directory (`replicafs unmount \(mountpoint ?? "<mountpoint>")`), then `replicafs reprotect \(vm.name) --target \(target) --disks-dir \(dir)` to replicate back here and `replicafs failback \(vm.name) --target \(target) --mode minimize-downtime`"
                + (failover.committed || failover.kind == .planned ? "" : "; or `replicafs failover cleanup \(vm.name) --target \(target)` to drop the failover and replicate from here again")
        }
        update(vm.name) {
            $0.state = .failedOver
            $0.failover = failover.summary
            $0.nextStep = next
            $0.initialPercent = nil
        }
        return true
    }

    /// A failed-over VM is in Warning with the failover and the next step as its reasons
    /// (no lag: nothing replicates from here while it runs elsewhere).
    static func annotateFailedOver(_ s: inout VMState) {
        s.health = max(s.health, .warning)
        s.lagSeconds = nil
        s.healthReasons = ["failed over: \(s.failover ?? "?")", "next: \(s.nextStep ?? "?")"]
    }
}
