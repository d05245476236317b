import Synchronization

/// A flag one thread sets to ask a looping thread to end; shared by reference.
public final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    /// Asks the loop to end.
    public func stop() { flag.store(true, ordering: .releasing) }

    /// Whether the loop should end.
    public var isStopped: Bool { flag.load(ordering: .acquiring) }
}
