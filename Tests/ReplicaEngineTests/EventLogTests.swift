import Foundation
import ReplicaEngine
import ReplicaSystem
import Testing

/// The event history (EventLog): lines appended whole by concurrent writers, bounded in size
/// by rotation, read back oldest first and filtered by time.
@Suite(.timeLimit(.minutes(1)))
struct EventLogTests {
    @Test("concurrent appends stay whole lines, the file rotates at its bound, and reads come back oldest first")
    func appendRotateRead() throws {
        let dir = "/tmp/ops-observe-eventlog-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = EventLog(directory: dir, maxBytes: 8192)
        // 4 threads × 100 events of ~150 bytes: about 60 KiB through an 8 KiB bound.
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<100 {
                log.record(.init(vm: "vm1", kind: .commit, message: "thread \(t) event \(i) " + String(repeating: "x", count: 40), point: i))
            }
        }
        let current = try FileSystem.stat(log.path(vm: "vm1")).st_size
        let rotated = try FileSystem.stat(log.path(vm: "vm1") + ".1").st_size
        #expect(current <= 8192 && rotated <= 8192, "sizes \(current), \(rotated)")
        // Every line of both files parses: no line was cut or interleaved with another.
        for file in [log.path(vm: "vm1"), log.path(vm: "vm1") + ".1"] {
            let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
            for line in lines {
                #expect((try? JSONDecoder().decode(EventLog.Event.self, from: Data(line.utf8))) != nil, "bad line: \(line)")
            }
        }
        let events = log.events(vm: "vm1")
        #expect(events.count > 40 && events.count < 400)
        #expect(events.map(\.time) == events.map(\.time).sorted(), "not oldest first")
        // Each thread's events come back in the order it wrote them.
        for t in 0..<4 {
            let mine = events.filter { $0.message.hasPrefix("thread \(t) ") }.compactMap(\.point)
            #expect(mine == mine.sorted())
        }
        #expect(log.vms() == ["vm1"])
        // Times are ISO-8601 UTC with milliseconds; --since filters on them.
        #expect(events.allSatisfy { $0.time.count == 24 && $0.time.hasSuffix("Z") && $0.date != nil })
        #expect(log.events(vm: "vm1", since: Date().addingTimeInterval(60)).isEmpty)
        #expect(log.events(vm: "vm1", since: Date().addingTimeInterval(-60)).count == events.count)
    }
}
