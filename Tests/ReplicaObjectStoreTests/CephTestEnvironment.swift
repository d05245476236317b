import Foundation
import ReplicaStore
import ReplicaSystem
import Testing
@testable import ReplicaObjectStore

/// The Ceph RGW the object-store tests run against: the env file `Tools/ceph.sh start` wrote
/// (`$REPLICAFS_S3_ENV`, which Tools/test.sh sets; by hand the default cluster's
/// /tmp/replicafs-ceph/env). Under CI a missing or stopped cluster fails the test; elsewhere
/// tests that need it are not enabled, with a note saying how to start one.
enum CephTestEnvironment {
    static let defaultEnvFile = "/tmp/replicafs-ceph/env"

    static var envFile: String {
        ProcessInfo.processInfo.environment["REPLICAFS_S3_ENV"] ?? defaultEnvFile
    }

    static var underCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// For `.enabled(if:)`: run when a cluster's env file exists, and always under CI.
    static var enabled: Bool {
        if underCI || FileManager.default.fileExists(atPath: envFile) { return true }
        print("Ceph RGW tests not enabled: no \(envFile) (start one with Tools/ceph.sh start, or set REPLICAFS_S3_ENV)")
        return false
    }

    /// The cluster's variables (AWS_ENDPOINT_URL, keys, REPLICAFS_CEPH_DIR, REPLICAFS_RGW_PIDFILE);
    /// throws when there is none or its radosgw is not running.
    static func load() throws -> [String: String] {
        guard let text = try? String(contentsOfFile: envFile, encoding: .utf8) else {
            throw ReplicaError("Ceph RGW is not running: no env file \(envFile) (Tools/ceph.sh start; Tools/test.sh starts one)")
        }
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            env[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let pid = rgwPID(env), kill(pid, 0) == 0 else {
            throw ReplicaError("Ceph RGW is not running: radosgw of \(envFile) is not alive")
        }
        return env
    }

    static func rgwPID(_ env: [String: String]) -> pid_t? {
        guard let file = env["REPLICAFS_RGW_PIDFILE"],
              let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A new bucket for one test, with a name no other test or run uses.
    static func freshBucket(_ label: String, prefix: String = "", parallelism: Int = 6,
                            retryDelays: [Double] = [0.2, 0.5, 1.0]) throws -> (S3Bucket, [String: String]) {
        let env = try load()
        let name = "t-\(label)-\(UInt32.random(in: 0...UInt32.max))"
        let url = S3URL(bucket: name, prefix: prefix)
        let bucket = S3Bucket(url: url, configuration: try S3Configuration.resolve(options: TargetOptions(), environment: env),
                              parallelism: parallelism, retryDelays: retryDelays)
        try bucket.createBucket()
        return (bucket, env)
    }

    /// `Tools/ceph.sh ARGS --dir <the cluster's dir>`, failing with its output. Spawned with
    /// posix_spawn and reaped with waitpid: Foundation's `Process.waitUntilExit` missed the
    /// exit of `restart-rgw` (whose radosgw daemonizes) and hung the kill test forever.
    static func cephScript(_ args: [String], env: [String: String]) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/ceph.sh").path
        let output = "/tmp/s3-client-test-ceph-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = (["/bin/bash", script] + args + ["--dir", env["REPLICAFS_CEPH_DIR"] ?? ""]).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, envp)
        guard rc == 0 else { throw ReplicaError("ceph.sh \(args.joined(separator: " ")): posix_spawn failed (\(rc))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            throw ReplicaError("ceph.sh \(args.joined(separator: " ")) failed (wait status \(status)): \(text)")
        }
    }

    /// `count` random bytes in a new file under /tmp; removed by the caller.
    static func randomFile(_ label: String, count: Int) throws -> String {
        let path = "/tmp/s3-client-test-\(label)-\(UInt32.random(in: 0...UInt32.max))"
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        defer { try? random.close() }
        let data = random.readData(ofLength: count)
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }
}
