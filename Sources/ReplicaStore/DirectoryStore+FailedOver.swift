import ReplicaSystem

extension DirectoryStore {
    /// The VMs of this store whose failover state is recorded, sorted by name. Entries that
    /// are not valid VM names (the store's own files) are skipped.
    public func failedOverVMs() -> [String] {
        let names = (try? FileSystem.list(root)) ?? []
        return names.filter { ProtectedVM.validName($0) && failoverState($0) != nil }.sorted()
    }

    /// The VMs with a replica or metadata in this store, sorted by name.
    public func vmNames() -> [String] {
        let names = (try? FileSystem.list(root)) ?? []
        return names.filter { ProtectedVM.validName($0) && (hasVM($0) || ((try? metadata(vm: $0)) ?? nil) != nil) }.sorted()
    }
}
