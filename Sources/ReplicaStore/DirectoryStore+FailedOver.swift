import ReplicaSystem

extension DirectoryStore {
    /// The VMs of this store whose failover state is recorded, sorted by name. Entries that
    /// are not valid VM names (the store's own files) are skipped.
    public func failedOverVMs() -> [String] {
        let names = (try? FileSystem.list(root)) ?? []
        return names.filter { ProtectedVM.validName($0) && failoverState($0) != nil }.sorted()
    }
}
