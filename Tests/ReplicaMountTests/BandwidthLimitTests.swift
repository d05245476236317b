import Foundation
import Testing

/// `--max-bandwidth` through a real mount: the initial copy and delta replication to a
/// receiver (`replicafs serve`, mutual TLS on loopback) and to a local directory store hold
/// the set rate within 10%, a schedule by local time changed with `protect --update` takes
/// effect without a restart, and `status`/`jobs` say the VM is throttled, with the time
/// waited on the limit.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct BandwidthLimitTests {
    struct VM: Decodable {
        var state: String
        var bytesSent: Int64
        var logBytesShipped: Int64
        var throttled: Bool?
        var throttledSeconds: Double?
        var maxBandwidth: String?
        var bandwidthLimitBytesPerSecond: Int?
        var healthReasons: [String]
    }
    struct M: Decodable { var vms: [VM] }

    func vmStatus(_ site: Site) throws -> VM {
        let status = try JSONDecoder().decode([M].self, from: Data(Shell.statusJSON(site.mnt).utf8))
        return try #require(status.first?.vms.first)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Writes `mib` MiB of random data through the mount at `seekMiB` and waits until the
    /// bytes that crossed grew by that much; the rate (bytes sent over the seconds from the
    /// write's start to the last byte committed), and whether `status` showed the VM throttled
    /// meanwhile (in JSON and in text).
    func shipAndMeasure(_ site: Site, _ image: String, mib: Int, seekMiB: Int) throws -> (rate: Double, sawThrottled: Bool, sawText: Bool) {
        let before = try vmStatus(site)
        let started = Self.now()
        Shell.must("dd if=/dev/urandom of='\(site.mnt)/\(image)' bs=1M count=\(mib) seek=\(seekMiB) conv=notrunc,fsync status=none")
        var sawThrottled = false
        var sawText = false
        var after = before
        var previousPoll = started
        var finished = started
        let deadline = started + 60
        while Self.now() < deadline {
            let poll = Self.now()
            after = try vmStatus(site)
            if after.bytesSent - before.bytesSent >= Int64(mib) << 20 {
                // The last byte committed between the previous poll and this one: the midpoint.
                finished = (previousPoll + poll) / 2
                break
            }
            previousPoll = poll
            if after.throttled == true, !sawThrottled {
                sawThrottled = true
                sawText = Shell.must("\"$RFS\" status '\(site.mnt)'").contains("THROTTLED now")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let seconds = finished - started
        let sent = after.bytesSent - before.bytesSent
        #expect(sent >= Int64(mib) << 20, "only \(sent) bytes crossed in \(seconds) s")
        return (Double(sent) / seconds, sawThrottled, sawText)
    }

    /// "HH:MM-HH:MM=RATE,*=unlimited" with a window around the current local time.
    static func windowNow(_ rate: String) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm"
        formatter.timeZone = .current
        let from = formatter.string(from: Date().addingTimeInterval(-600))
        let to = formatter.string(from: Date().addingTimeInterval(600))
        return "\(from)-\(to)=\(rate),*=unlimited"
    }

    @Test("throttled to a receiver over TLS: initial copy and delta within 10% of 3MB/s, status says throttled; a schedule changed live sets 2MB/s")
    func throttledToReceiver() throws {
        let site = Site("bwremote")
        let receiver = RemoteReplicationTests.Receiver(site)
        defer { receiver.stop(); site.cleanup() }
        receiver.start()
        let limit = 3_000_000.0
        Shell.must("truncate -s 96M '\(site.disks)/b.img' && dd if=/dev/urandom of='\(site.disks)/b.img' bs=1M count=12 seek=8 conv=notrunc status=none")
        site.mount()
        let started = Self.now()
        Shell.must("\"$RFS\" protect b --disks-dir '\(site.disks)' --disk b.img --target \(receiver.url) --pki '\(receiver.pki)' --copy-frequency continuous --max-bandwidth 3MB/s")
        Shell.must("for i in $(seq 1 600); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM b: protected' && exit 0; sleep 0.05; done; exit 1")
        let wallRate = Double(12 << 20) / (Self.now() - started)
        // The copy's own rate, as the engine measured it while the bytes went.
        struct Initial: Decodable { var initialMBps: Double? }
        struct IM: Decodable { var vms: [Initial] }
        let reported = try JSONDecoder().decode([IM].self, from: Data(Shell.statusJSON(site.mnt).utf8))
        let initialRate = try #require(reported.first?.vms.first?.initialMBps) * 1e6
        print("initial copy to serve at --max-bandwidth 3MB/s: \(String(format: "%.2f", initialRate / 1e6)) MB/s (\(String(format: "%.3f", initialRate / limit))x the limit; wall clock with protect \(String(format: "%.3f", wallRate / limit))x)")
        #expect(abs(initialRate - limit) <= limit * 0.10)
        #expect(wallRate <= limit * 1.10)

        // A pause longer than the limiter's busy credit (1 s): the delta starts from the burst.
        Thread.sleep(forTimeInterval: 1.5)
        let delta = try shipAndMeasure(site, "b.img", mib: 12, seekMiB: 40)
        print("delta replication to serve at --max-bandwidth 3MB/s: \(String(format: "%.2f", delta.rate / 1e6)) MB/s (\(String(format: "%.3f", delta.rate / limit))x the limit)")
        #expect(abs(delta.rate - limit) <= limit * 0.10)
        #expect(delta.sawThrottled && delta.sawText)
        let v = try vmStatus(site)
        #expect(v.maxBandwidth == "3MB/s" && v.bandwidthLimitBytesPerSecond == 3_000_000)
        #expect((v.throttledSeconds ?? 0) > 2, "\(v)")
        let jobs = Shell.must("\"$RFS\" jobs --json")
        #expect(jobs.contains("\"throttledSeconds\""), "\(jobs)")

        // A schedule whose window holds the local time now, set on the running daemon.
        let schedule = Self.windowNow("2MB/s")
        Shell.must("\"$RFS\" protect b --disks-dir '\(site.disks)' --update --max-bandwidth '\(schedule)'")
        let scheduled = try shipAndMeasure(site, "b.img", mib: 8, seekMiB: 60)
        print("delta at schedule \(schedule): \(String(format: "%.2f", scheduled.rate / 1e6)) MB/s (\(String(format: "%.3f", scheduled.rate / 2e6))x 2MB/s)")
        #expect(abs(scheduled.rate - 2e6) <= 2e6 * 0.10)
        #expect(try vmStatus(site).bandwidthLimitBytesPerSecond == 2_000_000)

        let exported = site.root + "/export.img"
        Shell.must("\"$RFS\" snapshot b --wait >/dev/null && \"$RFS\" export b --target \(receiver.url) --pki '\(receiver.pki)' --point latest --disk b.img --to '\(exported)'")
        #expect(Shell.sha256(exported) == Shell.sha256(site.mnt + "/b.img"))
        site.unmount()
    }

    @Test("throttled to a local directory store: delta replication within 10% of 3MB/s")
    func throttledToDirectory() throws {
        let site = Site("bwlocal")
        defer { site.cleanup() }
        let store = site.root + "/store"
        Shell.must("mkdir -p '\(store)' && truncate -s 64M '\(site.disks)/d.img'")
        site.mount()
        Shell.must("\"$RFS\" protect d --disks-dir '\(site.disks)' --disk d.img --target '\(store)' --copy-frequency continuous --max-bandwidth 3MB/s")
        Shell.must("for i in $(seq 1 600); do \"$RFS\" status '\(site.mnt)' | grep -q 'VM d: protected' && exit 0; sleep 0.05; done; exit 1")
        let delta = try shipAndMeasure(site, "d.img", mib: 12, seekMiB: 8)
        print("delta replication to a directory store at --max-bandwidth 3MB/s: \(String(format: "%.2f", delta.rate / 1e6)) MB/s (\(String(format: "%.3f", delta.rate / 3e6))x the limit)")
        #expect(abs(delta.rate - 3e6) <= 3e6 * 0.10)
        #expect(delta.sawThrottled)
        Shell.must("\"$RFS\" snapshot d --wait >/dev/null")
        Shell.must("\"$RFS\" export d --target '\(store)' --point latest --disk d.img --to '\(site.root)/export.img'")
        #expect(Shell.sha256(site.root + "/export.img") == Shell.sha256(site.mnt + "/d.img"))
        site.unmount()
    }
}
