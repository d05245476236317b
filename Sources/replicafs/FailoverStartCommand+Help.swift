import ArgumentParser
import Foundation

extension FailoverStartCommand {
    /// The arguments and options of `failover start`, for the help of the `failover` group:
    /// `replicafs failover --help` is what a user types to learn how to fail a VM over, and
    /// ArgumentParser shows only the subcommands of a group there. Generated from the start
    /// command itself, so it cannot drift from the options that are parsed.
    static var optionsHelp: String {
        let help = helpMessage(columns: 78)
        // Keep the ARGUMENTS and OPTIONS sections: the overview and usage name `start`, and
        // the group's help already has its own `--help` line.
        let sections = help.range(of: "ARGUMENTS:").map { String(help[$0.lowerBound...]) } ?? help
        let lines = sections.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.contains("-h, --help") }
            .map { line -> String in
                switch line {
                case "ARGUMENTS:": return "ARGUMENTS OF `failover start`:"
                case "OPTIONS:": return "OPTIONS OF `failover start`:"
                default: return String(line)
                }
            }
        return """
            Without a subcommand, `replicafs failover <vm> --target S --point P --mount M [--test | --planned]` \
            runs `failover start` (the default subcommand):

            \(lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines))
            """
    }
}
