import Foundation
import Testing

/// A site replicating to a bucket of the Ceph RGW the tests run against (`$REPLICAFS_S3_ENV`,
/// written by `Tools/ceph.sh start`; Tools/test.sh starts one): the bucket, a `Site`, and the
/// environment every command runs with (the cluster's AWS variables, the site's own S3 cache).
final class S3Site {
    static var envFile: String { ProcessInfo.processInfo.environment["REPLICAFS_S3_ENV"] ?? "/tmp/replicafs-ceph/env" }

    static var enabled: Bool {
        if ProcessInfo.processInfo.environment["CI"] == "true" || FileManager.default.fileExists(atPath: envFile) { return true }
        print("Ceph RGW site tests not enabled: no \(envFile) (start one with Tools/ceph.sh start, or set REPLICAFS_S3_ENV)")
        return false
    }

    /// The cluster's variables; fails the test when there is none or its radosgw is down.
    static func cluster() throws -> [String: String] {
        let text = try #require(try? String(contentsOfFile: envFile, encoding: .utf8),
                                "Ceph RGW is not running: no env file \(envFile) (Tools/ceph.sh start; Tools/test.sh starts one)")
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            env[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        #expect(Shell.run("kill -0 $(cat '\(env["REPLICAFS_RGW_PIDFILE"] ?? "/nonexistent")')").ok, "Ceph RGW of \(envFile) is not running")
        return env
    }

    let site: Site
    let env: [String: String]
    let bucket: String
    var target: String { "s3://\(bucket)/site" }
    var cache: String { site.root + "/s3cache" }
    var work: String { site.root + "/work" }
    var prefix: String {
        let vars = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        return "export " + vars.map { "\($0)='\(env[$0] ?? "")'" }.joined(separator: " ") + " REPLICAFS_S3_CACHE='\(cache)'; "
    }

    init(_ name: String) throws {
        env = try S3Site.cluster()
        site = Site(name)
        bucket = "e2e-\(name)-\(UInt32.random(in: 0...UInt32.max))"
        sh("python3 -c 'import boto3; boto3.client(\"s3\").create_bucket(Bucket=\"\(bucket)\")'")
    }

    @discardableResult
    func sh(_ command: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        Shell.must(prefix + command, sourceLocation: sourceLocation)
    }

    func run(_ command: String) -> Shell.Result { Shell.run(prefix + command) }

    func sha(_ path: String) -> String { String(sh("sha256sum '\(path)'").prefix(64)) }

    /// The mount daemon of the site's disks, with the cluster's credentials.
    func mount(_ extraEnv: String = "") { sh("\(extraEnv) \"$RFS\" mount '\(site.disks)' '\(site.mnt)'") }

    func waitProtected(_ vm: String) {
        sh("for i in $(seq 1 600); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM \(vm): protected' && exit 0; sleep 0.1; done; \"$RFS\" status '\(site.mnt)'; exit 1")
    }

    func snapshot(_ vm: String, app: Bool = false) throws -> Int {
        struct P: Decodable { var id: Int; var consistency: String }
        let p = try JSONDecoder().decode(P.self, from: Data(sh("\"$RFS\" snapshot \(vm) --wait --json\(app ? " --app-consistent" : "")").utf8))
        #expect(p.consistency == (app ? "app" : "crash"))
        return p.id
    }

    func pointIDs(_ vm: String) throws -> [Int] {
        struct Row: Decodable { var id: Int }
        return try JSONDecoder().decode([Row].self, from: Data(sh("\"$RFS\" points \(vm) --target \(target) --json").utf8)).map(\.id)
    }

    /// sha256 of `disk` at `point`, exported from the bucket.
    func exported(_ vm: String, point: String, disk: String) -> String {
        let out = "\(site.root)/export-\(point)-\(disk)"
        sh("rm -f '\(out)' && \"$RFS\" export \(vm) --target \(target) --point \(point) --disk \(disk) --to '\(out)'")
        defer { unlink(out) }
        return sha(out)
    }

    /// Keys under `prefix` in the bucket (below the target's prefix).
    func keys(_ prefix: String) -> [String] {
        sh("python3 -c 'import boto3; [print(o[\"Key\"]) for p in boto3.client(\"s3\").get_paginator(\"list_objects_v2\").paginate(Bucket=\"\(bucket)\", Prefix=\"site/\(prefix)\") for o in p.get(\"Contents\", [])]'")
            .split(separator: "\n").map { String($0.dropFirst("site/".count)) }
    }

    /// Fails over (its mount registered for cleanup) and returns the JSON answer.
    func failover(_ vm: String, _ args: String, mount: String) throws -> (point: Int, seconds: Double) {
        sh("mkdir -p '\(mount)'")
        site.extraMounts.append(mount)
        struct F: Decodable { var point: Int; var mountSeconds: Double }
        let f = try JSONDecoder().decode(F.self, from: Data(sh("\"$RFS\" failover \(vm) --target \(target) --mount '\(mount)' --work-dir '\(work)' --json \(args)").utf8))
        return (f.point, f.mountSeconds)
    }

    func cacheBytes() -> Int64 { Int64(sh("du -sb '\(cache)' 2>/dev/null | cut -f1 || echo 0")) ?? 0 }

    func cleanup() {
        Shell.run(prefix + "\"$RFS\" failover cleanup vm --target \(target) >/dev/null 2>&1")
        site.cleanup()
        Shell.run(prefix + "python3 -c 'import boto3; b=boto3.resource(\"s3\").Bucket(\"\(bucket)\"); b.objects.all().delete(); [u.abort() for u in b.multipart_uploads.all()]; b.delete()'")
    }
}
