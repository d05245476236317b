import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization

/// The bandwidth limit as the replicator applies it: opens a VM's store throttled by the
/// daemon's shared limiter for its `--max-bandwidth` (`BandwidthLimiter.shared`), and counts
/// per VM the time its sends waited on the limit, so `status` and `jobs` say a VM is
/// throttled rather than merely behind.
public final class BandwidthMeter: Sendable {
    struct Waits {
        var seconds: Double = 0
        /// When the last wait ended (seconds since the epoch).
        var lastEnd: Double = 0
        /// Sends of this VM in `throttle` now (waiting or about to).
        var active = 0
        /// The VM's limit as last opened (nil: none).
        var limit: String?
    }

    private let waits = Mutex<[String: Waits]>([:])
    /// A VM that waited within this many seconds is reported as throttled now.
    static let recentSeconds = 2.0

    public init() {}

    /// `vm`'s target store, throttled when its policy or options set a limit.
    public func openStore(_ vm: ProtectedVM) throws -> any TargetStore {
        let store = try openTargetStore(vm.target, options: vm.storeOptions)
        let name = vm.name
        let text = vm.storeOptions.maxBandwidth
        let limiter = try BandwidthLimiter.shared(text)
        waits.withLock { $0[name, default: Waits()].limit = limiter == nil ? nil : text }
        guard let limiter else { return store }
        return ThrottledStore(store) { [self] bytes in
            waits.withLock { $0[name, default: Waits()].active += 1 }
            let started = Replicator.now()
            limiter.throttle(bytes)
            let ended = Replicator.now()
            waits.withLock { table in
                var w = table[name] ?? Waits()
                w.active -= 1
                // Sub-millisecond returns are the bucket's burst, not a wait.
                if ended - started > 0.001 {
                    w.seconds += ended - started
                    w.lastEnd = ended
                }
                table[name] = w
            }
        }
    }

    /// Fills the state's bandwidth fields: the limit in force now, the time waited on it, and
    /// whether the VM is throttled now.
    func annotate(_ state: inout VMState, now: Double) {
        let w = waits.withLock { $0[state.vm] } ?? Waits()
        guard let text = w.limit, let limiter = try? BandwidthLimiter.shared(text) else {
            state.maxBandwidth = nil
            state.bandwidthLimitBytesPerSecond = nil
            state.throttled = w.seconds > 0 ? false : nil
            state.throttledSeconds = w.seconds > 0 ? w.seconds : nil
            return
        }
        state.maxBandwidth = text
        state.bandwidthLimitBytesPerSecond = limiter.currentRate.bytesPerSecond
        state.throttledSeconds = w.seconds
        // Waiting now (a wait in progress on the shared limiter), or a wait that just ended.
        state.throttled = (w.active > 0 && limiter.throttled(within: 0)) || (w.lastEnd > 0 && now - w.lastEnd < Self.recentSeconds)
    }
}
