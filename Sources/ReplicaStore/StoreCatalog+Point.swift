import ReplicaSystem

extension StoreCatalog {
    /// The point `selector` names in this catalog, or an error saying what `vm` lacks (code
    /// `.noSuchPoint`): the same answer from every kind of store.
    public func point(_ selector: PointSelector, vm: String) throws -> RecoveryPoint {
        let found: RecoveryPoint?
        switch selector {
        case .id(let id): found = points.first { $0.id == id }
        case .latest: found = points.last
        case .latestApp: found = points.last { $0.consistency == .app }
        }
        guard let found else {
            switch selector {
            case .id(let id): throw ReplicaError("recovery point \(id) not found for VM \(vm)", code: .noSuchPoint)
            case .latest: throw ReplicaError("VM \(vm) has no recovery point yet", code: .noSuchPoint)
            case .latestApp: throw ReplicaError("VM \(vm) has no app-consistent recovery point", code: .noSuchPoint)
            }
        }
        return found
    }
}
