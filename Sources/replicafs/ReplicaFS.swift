import ArgumentParser
import Foundation
import ReplicaEngine
import ReplicaNet
import ReplicaObjectStore
import ReplicaStore
import ReplicaSystem

/// `replicafs`: protect disk images through a FUSE mount that logs every write.
@main
struct ReplicaFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicafs",
        abstract: "Protect VM disk images: a FUSE mount that logs every write into HRL change logs.",
        version: ReplicaVersion.current,
        subcommands: [MountCommand.self, UnmountCommand.self, RotateCommand.self, StatusCommand.self, LogCommand.self,
                      ProtectCommand.self, UnprotectCommand.self, SnapshotCommand.self, PointsCommand.self, ExportCommand.self, JobsCommand.self,
                      FailoverCommand.self, ReprotectCommand.self, FailbackCommand.self, PlanCommand.self,
                      ResumeCommand.self, ResyncCommand.self, VerifyCommand.self, BlockSyncCommand.self,
                      VMsCommand.self, PolicyCommand.self, EventsCommand.self,
                      CertsCommand.self, ServeCommand.self]
    )

    /// Operator errors print as one line, `replicafs: <problem>`, and exit 1; usage errors
    /// keep ArgumentParser's help text.
    static func main() {
        DaemonLog.bootstrap()
        ObjectStoreOpener.register()
        TargetStoreOpeners.registerMarkedDirectory { target, options in try SealedStoreDirectory.open(target, options: options).store }
        TargetStoreOpeners.register(scheme: ReplicaNet.scheme) { target, options in try RemoteStore(url: target, options: options) }
        OriginalSites.register(scheme: ReplicaNet.scheme) { url, options in try RemoteOriginalSite(url: url, options: options) }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            // Help and usage errors keep ArgumentParser's text; a check of ours in a
            // `validate()` is an operator error like any other: one line.
            let code = exitCode(for: error)
            if code == .success || code == .validationFailure { exit(withError: error) }
            fail(message(for: error))
        }
        do {
            try command.run()
        } catch let error as ReplicaError {
            fail(error.description)
        } catch let error as SystemError {
            fail(error.description)
        } catch let error as DecodingError {
            fail("unreadable answer from the daemon: \(error)")
        } catch {
            exit(withError: error)
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("replicafs: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
