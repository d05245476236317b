import ReplicaLog
import ReplicaSystem
/// The change logs a source keeps beside its images (`<image>.<seq>.hrl`): what a planned
/// failover ships after stopping the source, and what a failback clears before the rebase.
public enum SourceLogs {
    /// Every change log in `directory` of the given images, in name order.
    public static func list(in directory: String, of images: [String]) throws -> [String] {
        try FileSystem.list(directory).filter { name in LogName.parse(name).map { images.contains($0.image) } ?? false }
            .sorted().map { directory + "/" + $0 }
    }
}
