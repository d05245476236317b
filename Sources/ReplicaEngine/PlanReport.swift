import Foundation
import ReplicaSystem

/// What a recovery plan run did: per group its hooks and VMs, each ok, failed or skipped, with
/// the error and the seconds it took. `failedVMs`, `failedHooks` and `notStarted` answer the
/// operator's questions first: what broke, and what never ran because of it.
public struct PlanReport: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        case ok, failed, skipped
    }

    /// A pre or post command.
    public struct Hook: Codable, Sendable, Equatable {
        public var command: String
        public var outcome: Outcome
        public var error: String?
        public var seconds: Double
    }

    public struct VMResult: Codable, Sendable, Equatable {
        public var name: String
        public var outcome: Outcome
        public var error: String?
        /// The failed step's error code (a `ReplicaError`'s), for programs reading the report.
        public var errorCode: ReplicaError.Code?
        public var seconds: Double
    }

    public struct GroupResult: Codable, Sendable, Equatable {
        public var name: String
        /// ok when every step succeeded, failed when one failed, skipped when it never started.
        public var outcome: Outcome
        public var pre: Hook?
        public var vms: [VMResult]
        public var post: Hook?
        public var seconds: Double
    }

    public var plan: String
    public var operation: String
    public var ok: Bool
    public var seconds: Double
    public var groups: [GroupResult]
    /// Names of the VMs whose action failed.
    public var failedVMs: [String]
    /// "<group>/pre" or "<group>/post" for each hook that failed.
    public var failedHooks: [String]
    /// Groups that never started because an earlier step failed.
    public var notStarted: [String]

    public init(plan: String, operation: String, seconds: Double, groups: [GroupResult]) {
        self.plan = plan
        self.operation = operation
        self.seconds = seconds
        self.groups = groups
        failedVMs = groups.flatMap { $0.vms.filter { $0.outcome == .failed }.map(\.name) }
        failedHooks = groups.flatMap { g in
            [("pre", g.pre), ("post", g.post)].compactMap { kind, hook in hook?.outcome == .failed ? "\(g.name)/\(kind)" : nil }
        }
        notStarted = groups.filter { $0.outcome == .skipped }.map(\.name)
        ok = groups.allSatisfy { $0.outcome == .ok }
    }

    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The report for people: one line per group, hook and VM, then what failed and what did not start.
    public var text: String {
        func secs(_ s: Double) -> String { String(format: "%.1f s", s) }
        func word(_ o: Outcome) -> String { o == .failed ? "FAILED" : o.rawValue }
        var lines = ["plan \(plan): \(operation) \(ok ? "succeeded" : "FAILED") in \(secs(seconds))"]
        for g in groups {
            lines.append("group \(g.name): \(g.outcome == .skipped ? "not started" : word(g.outcome) + " (" + secs(g.seconds) + ")")")
            var rows: [(String, Outcome, Double, String?)] = []
            if let pre = g.pre { rows.append(("pre", pre.outcome, pre.seconds, pre.error ?? pre.command)) }
            for vm in g.vms { rows.append((vm.name, vm.outcome, vm.seconds, vm.error)) }
            if let post = g.post { rows.append(("post", post.outcome, post.seconds, post.error ?? post.command)) }
            let width = rows.map(\.0.count).max() ?? 0
            for (name, outcome, seconds, detail) in rows {
                var line = "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + word(outcome).padding(toLength: 7, withPad: " ", startingAt: 0)
                if outcome != .skipped { line += "  " + secs(seconds) }
                if let detail, outcome != .skipped { line += "  " + detail }
                lines.append(line)
            }
        }
        if !ok {
            var summary: [String] = []
            if !failedVMs.isEmpty { summary.append("failed VMs: " + failedVMs.joined(separator: ", ")) }
            if !failedHooks.isEmpty { summary.append("failed hooks: " + failedHooks.joined(separator: ", ")) }
            summary.append("groups not started: " + (notStarted.isEmpty ? "none" : notStarted.joined(separator: ", ")))
            lines.append(summary.joined(separator: "; "))
        }
        return lines.joined(separator: "\n")
    }
}
