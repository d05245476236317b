import Foundation
import ReplicaControl
import ReplicaEngine
import ReplicaSource
import ReplicaStore
import ReplicaSystem
import Synchronization

/// The progress of what a mount daemon copies for a VM (its initial copy, a resync), read
/// from the daemon's status a few times a second and shown by a `ProgressReporter`.
enum DaemonProgress {
    /// Runs `body` (a call the daemon answers once the copy is done) while showing the VM's
    /// initial copy or resync progress.
    static func showing<T>(_ entry: MountRegistry.Entry, vm: String, _ body: () throws -> T) rethrows -> T {
        let reporter = ProgressReporter()
        let done = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            while !done.load(ordering: .acquiring) {
                if let (label, copied, total) = progress(entry, vm: vm) { reporter.update(label, done: copied, total: total) }
                usleep(200_000)
            }
            finished.signal()
        }
        thread.start()
        var stopped = false
        func stop() {
            guard !stopped else { return }
            stopped = true
            done.store(true, ordering: .releasing)
            finished.wait()
        }
        defer {
            stop()
            reporter.finish()
        }
        let result = try body()
        stop()
        reporter.complete()
        return result
    }

    /// Waits until the daemon has copied the VM's disks to the target (`protect --wait`),
    /// showing the progress; fails when the VM goes Critical.
    static func waitForInitialCopy(_ entry: MountRegistry.Entry, vm: String) throws {
        let reporter = ProgressReporter()
        defer { reporter.finish() }
        while true {
            let response = try ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .status))
            if let s = response.status?.vms.first(where: { $0.vm == vm }) {
                if let (label, copied, total) = progress(s, images: response.status?.images ?? [], disksDir: entry.disksDir) {
                    reporter.update(label, done: copied, total: total)
                }
                if s.health == .critical { throw ReplicaError("the initial copy of VM \(vm) stopped: \(s.lastError ?? "critical")") }
                if s.state != .initialReplication && s.state != .initialReplicationScheduled { return reporter.complete() }
            }
            usleep(200_000)
        }
    }

    /// What is being copied for the VM now: a label, bytes done, bytes in all; nil when nothing is.
    static func progress(_ entry: MountRegistry.Entry, vm: String) -> (String, Int64, Int64)? {
        guard let response = try? ControlClient.call(socket: entry.socket, pid: entry.pid, ControlRequest(op: .status)),
              let status = response.status, let s = status.vms.first(where: { $0.vm == vm }) else { return nil }
        return progress(s, images: status.images, disksDir: entry.disksDir)
    }

    static func progress(_ s: VMState, images: [ImageState], disksDir: String) -> (String, Int64, Int64)? {
        let percent: Double
        let label: String
        switch s.state {
        case .initialReplication: percent = s.initialPercent ?? 0; label = "initial copy of \(s.vm)"
        case .resynchronizing: percent = s.resyncPercent ?? 0; label = "resync of \(s.vm)"
        default: return nil
        }
        let disks = Set(ProtectedVM.all(disksDir: disksDir).first { $0.name == s.vm }?.disks ?? [])
        let total = images.filter { disks.contains($0.name) }.reduce(Int64(0)) { $0 + $1.size }
        return (label, Int64(percent / 100 * Double(total)), total)
    }
}
