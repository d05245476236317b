import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// The resync window: daily local-time ranges (also across midnight) or always; bad text refused.
@Suite(.timeLimit(.minutes(2)))
struct ResyncSchedulerTests {
    func at(_ h: Int, _ m: Int) -> Date {
        Calendar.current.date(from: DateComponents(year: 2026, month: 11, day: 24, hour: h, minute: m))!
    }

    @Test func windowsAcrossMidnightAndWithinADay() throws {
        let night = try ResyncScheduler.Window("18:30-06:00")
        #expect(night.contains(at(18, 30)) && night.contains(at(23, 59)) && night.contains(at(0, 0)) && night.contains(at(5, 59)))
        #expect(!night.contains(at(6, 0)) && !night.contains(at(12, 0)) && !night.contains(at(18, 29)))
        let lunch = try ResyncScheduler.Window("12:00-13:30")
        #expect(lunch.contains(at(12, 0)) && lunch.contains(at(13, 29)))
        #expect(!lunch.contains(at(13, 30)) && !lunch.contains(at(11, 59)))
        #expect(try ResyncScheduler.Window("always").contains(at(9, 41)))
        for bad in ["", "18:30", "18:30-", "25:00-01:00", "18:60-06:00", "6-7", "18:30-18:30", "always-never"] {
            #expect(throws: ReplicaError.self, "\(bad)") { try ResyncScheduler.Window(bad) }
        }
    }

    @Test func nowSkipsTheWindowAndOldPoliciesDecode() throws {
        var policy = ReplicationPolicy()
        policy.resyncWindow = "12:00-13:00"
        let waiting = ResyncScheduler.Requirement(reason: "x", sinceNanos: 0, now: false)
        #expect(!ResyncScheduler.windowOpen(policy, waiting, at: at(14, 0)))
        #expect(ResyncScheduler.windowOpen(policy, waiting, at: at(12, 30)))
        #expect(ResyncScheduler.windowOpen(policy, .init(reason: "x", sinceNanos: 0, now: true), at: at(14, 0)))
        // A policy saved before resync existed has neither field: the defaults apply.
        let old = #"{"copyFrequency":300,"retention":86400,"compress":false}"#
        let decoded = try JSONDecoder().decode(ReplicationPolicy.self, from: Data(old.utf8))
        #expect(decoded.resyncWindow == nil && decoded.resyncThreshold == nil)
        #expect(ResyncScheduler.windowOpen(decoded, waiting, at: at(19, 0)))
        #expect(!ResyncScheduler.windowOpen(decoded, waiting, at: at(7, 0)))
    }
}
