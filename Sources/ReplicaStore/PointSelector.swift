import ReplicaSystem
/// Which recovery point to read: an id, the latest, or the latest app-consistent one.
public enum PointSelector: Equatable, Sendable {
    case id(Int)
    case latest
    case latestApp

    public init(_ text: String) throws {
        switch text {
        case "latest": self = .latest
        case "latest-app": self = .latestApp
        default:
            guard let id = Int(text) else { throw ReplicaError("bad recovery point '\(text)': use an id, latest or latest-app") }
            self = .id(id)
        }
    }
}
