import Foundation
import Synchronization
import Testing
@testable import ReplicaStore
import ReplicaSystem

/// The throttle: rates and schedules parse or are refused with one line; the token bucket
/// holds a measured rate within 10%, for one sender and for several at once.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BandwidthLimiterTests {
    @Test func ratesParse() throws {
        #expect(try BandwidthLimiter.Rate.parse("20MB/s").bytesPerSecond == 20_000_000)
        #expect(try BandwidthLimiter.Rate.parse("512KB/s").bytesPerSecond == 512_000)
        #expect(try BandwidthLimiter.Rate.parse("512kB/s").bytesPerSecond == 512_000)
        #expect(try BandwidthLimiter.Rate.parse("1MiB/s").bytesPerSecond == 1_048_576)
        #expect(try BandwidthLimiter.Rate.parse("1.5GB/s").bytesPerSecond == 1_500_000_000)
        #expect(try BandwidthLimiter.Rate.parse("100B/s").bytesPerSecond == 100)
        #expect(try BandwidthLimiter.Rate.parse("unlimited") == .unlimited)
        #expect(try BandwidthLimiter.Rate.parse("20MB/s").description == "20MB/s")
    }

    @Test(arguments: ["", "20", "20MB", "20Mb/s", "20mb/s", "-5MB/s", "0MB/s", "MB/s", "20 XB/s", "1e3MB/s", "fast", "nanMB/s"])
    func badRatesAreRefused(_ text: String) {
        do {
            _ = try BandwidthLimiter.Rate.parse(text)
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect("\(error)".contains("bad bandwidth") && !"\(error)".contains("\n"), "\(error)")
        }
    }

    @Test func schedulesPickTheWindowByLocalTime() throws {
        let schedule = try BandwidthLimiter.Schedule.parse("08:00-18:00=10MB/s,22:00-06:00=50MB/s,*=unlimited")
        let utc = TimeZone(identifier: "UTC")!
        func at(_ hour: Int, _ minute: Int) -> Date {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = utc
            return calendar.date(from: DateComponents(year: 2026, month: 3, day: 2, hour: hour, minute: minute))!
        }
        #expect(schedule.rate(at: at(7, 59), timeZone: utc) == .unlimited)
        #expect(schedule.rate(at: at(8, 0), timeZone: utc).bytesPerSecond == 10_000_000)
        #expect(schedule.rate(at: at(17, 59), timeZone: utc).bytesPerSecond == 10_000_000)
        #expect(schedule.rate(at: at(18, 0), timeZone: utc) == .unlimited)
        #expect(schedule.rate(at: at(23, 30), timeZone: utc).bytesPerSecond == 50_000_000)
        #expect(schedule.rate(at: at(5, 59), timeZone: utc).bytesPerSecond == 50_000_000)
        // The same instant is another local time elsewhere: 12:00 UTC is 21:00 in Tokyo.
        #expect(schedule.rate(at: at(12, 0), timeZone: TimeZone(identifier: "Asia/Tokyo")!) == .unlimited)
        // Without '*', other times are unlimited; a plain rate holds all day.
        #expect(try BandwidthLimiter.Schedule.parse("00:00-24:00=1MB/s").rate(at: at(23, 59), timeZone: utc).bytesPerSecond == 1_000_000)
        #expect(try BandwidthLimiter.Schedule.parse("20MB/s") == BandwidthLimiter.Schedule(constant: .init(bytesPerSecond: 20_000_000)))
    }

    @Test(arguments: ["08:00-18:00", "8:00-18:00=1MB/s", "08:00-25:00=1MB/s", "08:60-09:00=1MB/s", "08:00-08:00=1MB/s",
                      "*=1MB/s,*=2MB/s", "08:00-18:00=fast", "08:00=1MB/s", "08:00-18:00=1MB/s,", "x=1MB/s"])
    func badSchedulesAreRefused(_ text: String) {
        do {
            _ = try BandwidthLimiter(text)
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect("\(error)".contains("bad bandwidth") && !"\(error)".contains("\n"), "\(error)")
        }
    }

    /// Sends `total` bytes in `chunk`-sized pieces from `threads` threads at once; the seconds it took.
    static func send(_ limiter: BandwidthLimiter, total: Int, chunk: Int, threads: Int) -> Double {
        let start = ContinuousClock.now
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            var sent = 0
            while sent < total / threads {
                limiter.throttle(chunk)
                sent += chunk
            }
        }
        return BandwidthLimiter.seconds(ContinuousClock.now - start)
    }

    @Test(arguments: [1, 4])
    func measuredRateIsWithinTenPercent(threads: Int) throws {
        let limiter = try BandwidthLimiter("4MB/s")
        // 12 MB at 4 MB/s: 3 s (less the first burst of 0.1 s).
        let seconds = Self.send(limiter, total: 12_000_000, chunk: 64 * 1024, threads: threads)
        let rate = 12_000_000 / seconds
        #expect(abs(rate - 4_000_000) / 4_000_000 < 0.10, "measured \(Int(rate)) B/s over \(seconds) s")
        #expect(limiter.throttledTime > .seconds(2), "throttled \(limiter.throttledTime)")
        #expect(limiter.throttled(within: 1))
        #expect(limiter.bytesThrottled >= 12_000_000 - Int64(64 * 1024 * threads))
    }

    @Test func unlimitedNeverWaits() throws {
        let limiter = try BandwidthLimiter("unlimited")
        let seconds = Self.send(limiter, total: 1 << 30, chunk: 1 << 20, threads: 1)
        #expect(seconds < 0.5)
        #expect(limiter.throttledTime == .zero)
        #expect(!limiter.throttled(within: 10))
    }
}
