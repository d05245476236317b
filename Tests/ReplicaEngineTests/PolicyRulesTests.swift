import ReplicaStore
import ReplicaSystem
import Testing

/// The seeds' limits on a policy: copy frequency continuous/30s/5m/15m, app-consistent points
/// every 1 to 12 hours, retention at least the copy frequency, a bandwidth limit that parses.
@Suite(.timeLimit(.minutes(1)))
struct PolicyRulesTests {
    func policy(_ copy: Double, retention: Double = 86400, app: Double? = nil, bandwidth: String? = nil) -> ReplicationPolicy {
        var p = ReplicationPolicy()
        p.copyFrequency = copy
        p.retention = retention
        p.appConsistentEvery = app
        p.maxBandwidth = bandwidth
        return p
    }

    @Test("the seeds' values pass; every other one is refused with a one-line error naming the option")
    func limits() throws {
        for copy in [0.0, 30, 300, 900] { try policy(copy).validateRules(environment: [:]) }
        for app: Double in [3600, 6 * 3600, 12 * 3600] { try policy(300, app: app).validateRules(environment: [:]) }
        try policy(900, retention: 900).validateRules(environment: [:])
        let refused: [(ReplicationPolicy, String)] = [
            (policy(1), "--copy-frequency"), (policy(60), "--copy-frequency"), (policy(3600), "--copy-frequency"),
            (policy(300, app: 1800), "--app-consistent-every"), (policy(300, app: 13 * 3600), "--app-consistent-every"),
            (policy(900, retention: 600), "--retention"), (policy(0, retention: 0), "--retention"),
            (policy(300, bandwidth: "fast"), "--max-bandwidth"), (policy(300, bandwidth: "08:00-18:00=10MB/s,*"), "--max-bandwidth"),
        ]
        for (p, option) in refused {
            let error = try #require(throws: ReplicaError.self) { try p.validateRules(environment: [:]) }
            #expect(error.description.contains(option) && !error.description.contains("\n"), "\(error)")
        }
    }

    @Test("REPLICAFS_ALLOW_ANY_FREQUENCY=1 lifts the seeds' limits (tests), not the range checks")
    func escape() throws {
        let any = [ReplicationPolicy.anyFrequencyVariable: "1"]
        try policy(1, retention: 15).validateRules(environment: any)
        try policy(3600, retention: 10, app: 60).validateRules(environment: any)
        #expect(throws: ReplicaError.self) { try policy(.infinity).validateRules(environment: any) }
        #expect(throws: ReplicaError.self) { try policy(1, bandwidth: "20MB").validateRules(environment: any) }
    }

    @Test("bandwidth limits: a rate, unlimited, or a schedule of HH:MM-HH:MM=RATE and *=RATE")
    func bandwidth() throws {
        for ok in ["20MB/s", "1.5GB/s", "512KB/s", "100B/s", "unlimited", "08:00-18:00=10MB/s,*=unlimited", "22:00-06:00=1GB/s"] {
            try ReplicationPolicy.checkBandwidth(ok)
        }
        for bad in ["", "20MB", "-5MB/s", "0MB/s", "8:00-18:00=1MB/s", "08:00-24:00=1MB/s", "*=", "08:00=1MB/s", "nanMB/s"] {
            #expect(throws: ReplicaError.self, "\(bad) accepted") { try ReplicationPolicy.checkBandwidth(bad) }
        }
    }

    @Test("durations read back as the options write them")
    func describe() {
        #expect(ReplicationPolicy.describe(0) == "continuous")
        #expect(ReplicationPolicy.describe(30) == "30s")
        #expect(ReplicationPolicy.describe(300) == "5m")
        #expect(ReplicationPolicy.describe(7200) == "2h")
        #expect(ReplicationPolicy.describe(90) == "90s")
    }
}
