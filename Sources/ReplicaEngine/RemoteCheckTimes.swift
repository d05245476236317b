import Foundation
import ReplicaStore
import Synchronization

/// When each VM's remote store (a receiver, an object store) last answered the replicator's
/// per-tick questions, "is the VM failed over there?" and "does it hold the replica?", with
/// "no" and "yes". Against a local directory they are a stat each, but against a remote store
/// they are two requests (one returns the whole catalog) per VM every 100 ms, and the profile
/// of shipping to a receiver showed them costing more than the shipping itself. So a remote
/// store is asked at most once per `interval` while its answers stay the same; any failed
/// attempt forgets the time, so the next tick asks again. What a failover or a deleted
/// replica elsewhere changes in the meantime is refused by the store itself (a failed-over
/// or unknown VM takes no commit), and the retry after that refusal asks.
public final class RemoteCheckTimes: Sendable {
    static let interval = 1.0
    private let times = Mutex<[String: Double]>([:])

    public init() {}

    /// Whether `vm`'s store is remote and answered within `interval` of `now`.
    func fresh(_ vm: ProtectedVM, now: Double) -> Bool {
        guard TargetStoreOpeners.scheme(of: vm.target) != nil else { return false }
        return times.withLock { $0[vm.name].map { now - $0 < Self.interval && now >= $0 } ?? false }
    }

    /// Records that `vm`'s remote store answered "not failed over, replica present" at `now`.
    func answered(_ vm: ProtectedVM, now: Double) {
        guard TargetStoreOpeners.scheme(of: vm.target) != nil else { return }
        times.withLock { $0[vm.name] = now }
    }

    /// Forgets `vm`'s last answer: the next tick asks the store again.
    func forget(_ name: String) {
        _ = times.withLock { $0.removeValue(forKey: name) }
    }
}
