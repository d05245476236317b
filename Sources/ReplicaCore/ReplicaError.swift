/// An error meant for the operator: one line that names the problem and the thing it concerns.
public struct ReplicaError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
