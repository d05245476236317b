import Foundation
import Testing

/// Client-side encryption and throttling of an `s3://` target, end to end against Ceph RGW
/// (`S3Site`): a VM on a real mount protected with `--encrypt-key-file`, its points and a test
/// failover read back exactly while no object in the bucket holds a marker written into the
/// disk; a missing, wrong or superfluous key is one clear line and writes nothing, and in the
/// daemon makes the VM Critical with the reason. `--max-bandwidth` holds the initial copy and
/// the logs shipped to the bucket to the limit.
@Suite(.serialized, .timeLimit(.minutes(5)), .enabled(if: S3Site.enabled))
struct EncryptedObjectStoreTests {
    /// Objects (below the target's prefix) whose stored bytes contain `marker`, and how many
    /// objects were searched: every object is listed and read raw with boto3.
    func objectsHolding(_ s: S3Site, _ marker: String) -> (hits: [String], searched: Int) {
        let out = s.sh("""
            python3 -c 'import boto3,sys
            c = boto3.client("s3"); n = 0
            for p in c.get_paginator("list_objects_v2").paginate(Bucket="\(s.bucket)", Prefix="site/"):
                for o in p.get("Contents", []):
                    n += 1
                    if b"\(marker)" in c.get_object(Bucket="\(s.bucket)", Key=o["Key"])["Body"].read(): print("HIT", o["Key"])
            print("SEARCHED", n)'
            """)
        let lines = out.split(separator: "\n")
        return (lines.filter { $0.hasPrefix("HIT ") }.map { String($0.dropFirst(4)) },
                lines.first { $0.hasPrefix("SEARCHED ") }.flatMap { Int($0.dropFirst(9)) } ?? 0)
    }

    func keyFile(_ path: String) {
        Shell.must("head -c 32 /dev/urandom > '\(path)' && chmod 600 '\(path)'")
    }

    struct Health: Decodable { var health: String; var healthReasons: [String] }
    struct M: Decodable { var vms: [Health] }

    @Test("protect to s3:// with --encrypt-key-file: points and a test failover equal the source by sha256, no stored object holds the disk's plaintext marker; no key, another key and a key on a plain store are one-line errors writing nothing; a wrong key in the daemon makes the VM Critical")
    func encryptedTarget() throws {
        let s = try S3Site("sealed")
        defer { s.cleanup() }
        let site = s.site
        let key = site.root + "/key", wrong = site.root + "/wrong"
        keyFile(key)
        keyFile(wrong)
        let marker = "RFS-PLAINTEXT-\(UInt32.random(in: 0...UInt32.max))-MARKER"
        // The marker in the initial copy (a chunk object) and, below, in a shipped log.
        let markerFile = site.root + "/marker"
        Shell.must("for i in $(seq 1 2000); do printf '%s' '\(marker)'; done > '\(markerFile)'")
        s.sh("truncate -s 16M '\(site.disks)/e.img' && dd if='\(markerFile)' of='\(site.disks)/e.img' bs=4k seek=100 conv=notrunc status=none"
             + " && dd if=/dev/urandom of='\(site.disks)/e.img' bs=1M count=2 seek=4 conv=notrunc status=none")
        s.mount()
        s.sh("\"$RFS\" protect vm --disks-dir '\(site.disks)' --disk e.img --target \(s.target) --encrypt-key-file '\(key)' --copy-frequency 1h")
        s.waitProtected("vm")
        s.sh("dd if='\(markerFile)' of='\(site.mnt)/e.img' bs=4k seek=3000 conv=notrunc,fsync status=none"
             + " && dd if=/dev/urandom of='\(site.mnt)/e.img' bs=64k count=20 seek=30 conv=notrunc,fsync status=none")
        let point = try s.snapshot("vm")
        let sum = s.sha(site.mnt + "/e.img")

        // The VM's saved options carry the key file's path, never the key.
        struct Saved: Decodable { struct Options: Decodable { var encryptKeyFile: String? }; var targetOptions: Options? }
        let saved = Shell.must("cat '\(site.disks)/.replicafs/vms/vm.json'")
        #expect(try JSONDecoder().decode(Saved.self, from: Data(saved.utf8)).targetOptions?.encryptKeyFile == key, "\(saved)")
        // export and points open the bucket with the saved key file (the registry knows the VM).
        #expect(try s.pointIDs("vm").contains(point))
        #expect(s.exported("vm", point: String(point), disk: "e.img") == sum)
        // A test failover from the encrypted bucket; its daemon gets the key file too.
        _ = try s.failover("vm", "--point \(point) --test", mount: site.root + "/drill")
        #expect(s.sha(site.root + "/drill/e.img") == sum)
        s.sh("\"$RFS\" failover cleanup vm --target \(s.target)")

        // Every object raw: the marker (in the source 4000 times) is in none of them.
        let raw = objectsHolding(s, marker)
        #expect(raw.searched >= 8, "only \(raw.searched) objects in the bucket")
        #expect(raw.hits.isEmpty, "plaintext in \(raw.hits)")
        let markerObject = s.sh("python3 -c 'import boto3,sys; sys.stdout.buffer.write(boto3.client(\"s3\").get_object(Bucket=\"\(s.bucket)\", Key=\"site/encryption.json\")[\"Body\"].read())'")
        #expect(markerObject.contains("\"keyID\"") && markerObject.contains("AES-256-GCM"), "\(markerObject)")

        // Another key, no key (another VM into the same store), a key on a plain store: one
        // line, non-zero, nothing written.
        let before = s.keys("")
        let other = s.run("\"$RFS\" points vm --target \(s.target) --encrypt-key-file '\(wrong)'")
        #expect(!other.ok && other.stderr.contains("encrypted with another key") && other.stderr.split(separator: "\n").count == 1, "\(other.stderr)")
        s.sh("truncate -s 4M '\(site.disks)/n.img'")
        let none = s.run("\"$RFS\" protect nokey --disks-dir '\(site.disks)' --disk n.img --target \(s.target)")
        #expect(!none.ok && none.stderr.contains("is encrypted") && none.stderr.contains("--encrypt-key-file")
                && none.stderr.split(separator: "\n").count == 1, "\(none.stderr)")
        s.sh("python3 -c 'import boto3; boto3.client(\"s3\").put_object(Bucket=\"\(s.bucket)\", Key=\"plain/vms/x/vm.json\", Body=b\"{}\")'")
        let plain = s.run("\"$RFS\" protect nokey --disks-dir '\(site.disks)' --disk n.img --target s3://\(s.bucket)/plain --encrypt-key-file '\(key)'")
        #expect(!plain.ok && plain.stderr.contains("is not encrypted") && plain.stderr.split(separator: "\n").count == 1, "\(plain.stderr)")
        let plainKeys = s.sh("python3 -c 'import boto3; [print(o[\"Key\"]) for o in boto3.client(\"s3\").list_objects_v2(Bucket=\"\(s.bucket)\", Prefix=\"plain/\").get(\"Contents\", [])]'")
        #expect(plainKeys.split(separator: "\n") == ["plain/vms/x/vm.json"], "\(plainKeys)")
        #expect(s.keys("") == before, "a refused command wrote to the encrypted store")
        #expect(!s.run("test -e '\(site.disks)/.replicafs/vms/nokey.json'").ok, "a refused protect saved the VM")

        // The daemon's key file replaced by another key: the next pass fails as Critical, naming it.
        Shell.must("cp '\(key)' '\(key).good' && cp '\(wrong)' '\(key)'")
        _ = s.run("\"$RFS\" snapshot vm --wait")
        var vm: Health?
        for _ in 0..<100 {
            // status exits non-zero while a VM is Critical.
            vm = try JSONDecoder().decode([M].self, from: Data(Shell.run("\"$RFS\" status '\(site.mnt)' --json").stdout.utf8)).first?.vms.first
            if vm?.health == "critical" { break }
            usleep(100_000)
        }
        #expect(vm?.health == "critical" && vm?.healthReasons.joined().contains("encrypted with another key") == true, "\(String(describing: vm))")
        #expect(s.keys("") == before, "objects were written with the wrong key")
        Shell.must("cp '\(key).good' '\(key)'")
        site.unmount()
    }

    @Test("--max-bandwidth to s3://: the initial copy to the bucket within 10% of 4MB/s; delta replication held below 2MB/s set live, status says throttled")
    func throttledToObjectStore() throws {
        let s = try S3Site("bws3")
        defer { s.cleanup() }
        let site = s.site
        let limit = 4_000_000.0
        s.sh("truncate -s 64M '\(site.disks)/t.img' && dd if=/dev/urandom of='\(site.disks)/t.img' bs=1M count=16 seek=4 conv=notrunc status=none")
        s.mount()
        s.sh("\"$RFS\" protect t --disks-dir '\(site.disks)' --disk t.img --target \(s.target) --copy-frequency continuous --max-bandwidth 4MB/s")
        s.waitProtected("t")
        struct Initial: Decodable { var initialMBps: Double? }
        struct IM: Decodable { var vms: [Initial] }
        let reported = try JSONDecoder().decode([IM].self, from: Data(Shell.statusJSON(site.mnt).utf8))
        let initialRate = try #require(reported.first?.vms.first?.initialMBps) * 1e6
        print("initial copy to s3:// at --max-bandwidth 4MB/s: \(String(format: "%.2f", initialRate / 1e6)) MB/s (\(String(format: "%.3f", initialRate / limit))x the limit)")
        #expect(abs(initialRate - limit) <= limit * 0.10)

        // Delta replication: each commit to the bucket has seconds of its own work (scan, index,
        // several requests) that the limiter counts as idle, so logs reach the limit only where
        // that work is short; the limit must hold as a ceiling, and status says throttled. At
        // 2MB/s (set live): unthrottled, this machine ships 4-7 MB/s to RGW.
        s.sh("\"$RFS\" protect t --disks-dir '\(site.disks)' --update --max-bandwidth 2MB/s")
        Thread.sleep(forTimeInterval: 1.5)
        let delta = try BandwidthLimitTests().shipAndMeasure(site, "t.img", mib: 8, seekMiB: 30)
        print("delta replication to s3:// at --max-bandwidth 2MB/s: \(String(format: "%.2f", delta.rate / 1e6)) MB/s (\(String(format: "%.3f", delta.rate / 2e6))x the limit)")
        #expect(delta.rate <= 2e6 * 1.10)
        #expect(delta.sawThrottled)
        s.sh("\"$RFS\" snapshot t --wait >/dev/null")
        #expect(s.exported("t", point: "latest", disk: "t.img") == s.sha(site.mnt + "/t.img"))
        site.unmount()
    }
}
