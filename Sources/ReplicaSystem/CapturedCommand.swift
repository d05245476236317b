import Foundation
import Subprocess
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program with its output captured (swift-subprocess), for the commands an operator
/// hands ReplicaFS: quiesce and thaw hooks, a recovery plan's pre and post commands. Output
/// goes through temporary files, not pipes, and only the direct child is waited for: a hook
/// may start a background process that keeps the descriptors open long after it ends.
public struct CapturedCommand: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var ok: Bool { status == 0 }

    /// The line that says what went wrong: the last "replicafs: ..." or "Error: ..." line of
    /// stderr (without that prefix), else the last non-empty line of stderr, else of stdout.
    public var errorLine: String? {
        let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for prefix in ["replicafs: ", "Error: "] {
            if let line = lines.last(where: { $0.hasPrefix(prefix) }) { return String(line.dropFirst(prefix.count)) }
        }
        if let line = lines.last { return line }
        return stdout.split(separator: "\n").last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty }).map(String.init)
    }

    /// Runs `/bin/sh -c command`.
    public static func shell(_ command: String, timeout: Double?) throws -> CapturedCommand {
        try run(["/bin/sh", "-c", command], timeout: timeout)
    }

    /// Runs `argv` (argv[0] is the program's path); throws when it cannot start or runs past
    /// `timeout` seconds (then it is killed).
    public static func run(_ argv: [String], timeout: Double?) throws -> CapturedCommand {
        guard let program = argv.first else { throw ReplicaError("nothing to run") }
        let what = "'\(argv.joined(separator: " "))'"
        var template = Array("/tmp/replicafs-cmd-XXXXXX".utf8CString)
        guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError.current("mkdtemp", "/tmp")
        }
        let dir = String(cString: dirPtr)
        defer {
            unlink(dir + "/out")
            unlink(dir + "/err")
            rmdir(dir)
        }
        let out = try SystemPackage.FileDescriptor.open(FilePath(dir + "/out"), .writeOnly, options: [.create, .truncate],
                                                        permissions: [.ownerReadWrite])
        let err = try SystemPackage.FileDescriptor.open(FilePath(dir + "/err"), .writeOnly, options: [.create, .truncate],
                                                        permissions: [.ownerReadWrite])
        let arguments = Arguments(Array(argv.dropFirst()))
        let status: Int32 = try Self.blocking {
            try await withThrowingTaskGroup(of: Int32?.self) { group in
                group.addTask {
                    let result = try await Subprocess.run(
                        .path(FilePath(program)), arguments: arguments, input: .none,
                        output: .fileDescriptor(out, closeAfterSpawningProcess: true),
                        error: .fileDescriptor(err, closeAfterSpawningProcess: true))
                    switch result.terminationStatus {
                    case .exited(let code): return Int32(code)
                    case .signaled(let signal): return 128 + Int32(signal)
                    }
                }
                if let timeout {
                    group.addTask {
                        try await Task.sleep(nanoseconds: UInt64(max(0, timeout) * 1e9))
                        return nil
                    }
                }
                // The first to finish decides; cancelling the other kills a command still running.
                let first = try await group.next() ?? nil
                group.cancelAll()
                guard let first else { throw ReplicaError("\(what) timed out after \(Int(timeout ?? 0)) s") }
                return first
            }
        }
        let read = { (name: String) in
            String(decoding: (try? FileSystem.readFile(dir + "/" + name)) ?? [], as: UTF8.self)
        }
        return CapturedCommand(status: status, stdout: read("out"), stderr: read("err"))
    }

    /// Runs `body` on a task of its own and waits for it on this thread. For the engine's
    /// threads (replication, plans), never for a FUSE callback or a task of the cooperative pool.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return try outcome.withLock { $0! }.get()
    }
}
