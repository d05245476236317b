import Foundation
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGTERM, SIGINT and SIGHUP into clean-unmount requests. The signals are blocked in
/// every thread (so create the watcher before starting any) and one thread takes them with
/// sigwait; `stop()` ends that thread once the daemon is done serving.
final class StopSignalWatcher: Sendable {
    private static let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP]
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    /// Blocks the stop signals in the calling thread and in every thread it starts later.
    init() {
        var set = Self.signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        return set
    }

    /// Starts the thread that calls `requestUnmount` at each stop signal; a non-nil answer is
    /// why the daemon keeps serving (a busy mount), and is logged.
    func start(requestUnmount: @escaping @Sendable () -> String?) {
        let thread = Thread { [self] in
            defer { finished.store(true, ordering: .releasing) }
            var set = Self.signalSet()
            var sig: Int32 = 0
            while sigwait(&set, &sig) == 0 {
                if stopped.load(ordering: .acquiring) { return }
                if let problem = requestUnmount() {
                    DaemonLog.logger.warning("signal \(sig): not stopping: \(problem)")
                }
            }
        }
        thread.name = "replicafs-signals"
        thread.start()
    }

    /// Ends the watcher thread: a SIGHUP that only that thread can take, seen after the flag.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if !finished.load(ordering: .acquiring) { kill(getpid(), SIGHUP) }
    }
}
