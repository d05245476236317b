import Foundation
import Testing

/// The committed man page (docs/man/replicafs.1, made by swift-argument-parser's
/// generate-manual plugin through Tools/gen-man.sh) against the binary's command tree, as the
/// binary itself describes it (`--experimental-dump-help`, the plugin's own input): every
/// command shown in help has its entry, in the tree's order, with each of its options.
@Suite(.timeLimit(.minutes(1)))
struct ManPageTests {
    struct Tool: Decodable { var command: Command }
    struct Command: Decodable {
        var commandName: String
        var shouldDisplay: Bool?
        var subcommands: [Command]?
        var arguments: [Argument]?
    }
    struct Argument: Decodable {
        struct Name: Decodable { var kind: String; var name: String }
        var shouldDisplay: Bool
        var names: [Name]?
    }

    @Test("docs/man/replicafs.1 has every command and option of the current binary, in its place")
    func committedPageMatchesCommandTree() throws {
        let page = try String(contentsOfFile: OperabilityTests.repo + "/docs/man/replicafs.1", encoding: .utf8)
        let tool = try JSONDecoder().decode(Tool.self, from: Data(Shell.must("\"$RFS\" --experimental-dump-help").utf8))
        let lines = page.split(separator: "\n").map(String.init)
        // The commands depth first, as the page lists them (hidden ones are left out of both).
        var commands: [(path: String, options: [String])] = []
        func walk(_ c: Command, _ path: [String]) {
            guard c.shouldDisplay ?? true else { return }
            let options = (c.arguments ?? []).filter(\.shouldDisplay).flatMap { $0.names ?? [] }.filter { $0.kind == "long" }.map(\.name)
            commands.append(((path + [c.commandName]).joined(separator: " "), options))
            for s in c.subcommands ?? [] { walk(s, path + [c.commandName]) }
        }
        walk(tool.command, [])
        #expect(commands.count > 25 && commands.contains { $0.path == "replicafs events" } && commands.contains { $0.path == "replicafs failover cleanup" })
        // Each subcommand is an `.It Em <name>` entry after the previous one; its options
        // (`Fl -<option>`, or `Fl h , -help`) come between it and the next entry.
        var at = 0
        let entries = lines.indices.filter { lines[$0].hasPrefix(".It Em ") }
        for (path, options) in commands {
            let name = String(path.split(separator: " ").last!)
            var start = 0
            if path != "replicafs" {
                guard let i = entries.first(where: { $0 >= at && (lines[$0] == ".It Em \(name)" || lines[$0].hasPrefix(".It Em \"\(name),")) }) else {
                    Issue.record("the man page has no entry for `\(path)` (after line \(at)): run Tools/gen-man.sh")
                    continue
                }
                start = i
                at = i + 1
            }
            let end = entries.first { $0 > start } ?? lines.count
            let section = lines[start..<end].joined(separator: "\n")
            // `.It Fl -metrics Ar metrics`, `.It Fl h , -help`.
            for option in options where !section.contains(" -\(option) ") && !section.contains(" -\(option)\n") {
                Issue.record("the man page has no --\(option) for `\(path)`: run Tools/gen-man.sh")
            }
        }
    }
}
