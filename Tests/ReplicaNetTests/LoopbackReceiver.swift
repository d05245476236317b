import Dispatch
import Foundation
import NIOSSL
import ReplicaNet
import ReplicaStore
import ReplicaSystem
import Synchronization

/// A receiver served in this process on loopback for a test: started on a free port (or the
/// one it had, after `stop`), stopped by cancelling its task (connections close, as when the
/// receiver dies); blocking start and stop, callable from any non-cooperative thread.
final class LoopbackReceiver: Sendable {
    let store: DirectoryStore
    let tls: TLSConfiguration?
    let peerName: ReceiverServer.PeerName
    private let state = Mutex<(task: Task<Void, Error>?, port: Int)>((nil, 0))

    init(storeDirectory: String, tls: TLSConfiguration? = nil, peerName: @escaping ReceiverServer.PeerName = { _ in nil }) throws {
        try FileSystem.mkdirs(storeDirectory)
        store = try DirectoryStore(root: storeDirectory)
        self.tls = tls
        self.peerName = peerName
    }

    var port: Int { state.withLock { $0.port } }

    /// Serves (again); returns once the port listens.
    func start() throws {
        let ready = DispatchSemaphore(value: 0)
        let bound = Shared(0)
        let server = try ReceiverServer(store: store, host: "127.0.0.1", port: port, tls: tls, peerName: peerName)
        let task = Task {
            try await server.run { port in
                bound.value.withLock { $0 = port }
                ready.signal()
            }
        }
        guard ready.wait(timeout: .now() + 20) == .success else { task.cancel(); throw ReplicaError("receiver did not start") }
        state.withLock { $0 = (task, bound.value.withLock { $0 }) }
    }

    /// Stops serving and waits until it has.
    func stop() {
        guard let task = state.withLock({ s -> Task<Void, Error>? in defer { s.task = nil }; return s.task }) else { return }
        task.cancel()
        let done = DispatchSemaphore(value: 0)
        Task { _ = try? await task.value; done.signal() }
        done.wait()
    }

    func client(tls: TLSConfiguration? = nil) -> ReceiverClient { ReceiverClient(host: "127.0.0.1", port: port, tls: tls) }
}

/// Runs blocking work (the store's synchronous calls) off the cooperative pool.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// A value threads share (a Mutex in a class, so closures can capture it).
final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ value: T) { self.value = Mutex(value) }
}
