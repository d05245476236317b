import ArgumentParser
import Foundation
import ReplicaNet
import ReplicaSystem

/// `replicafs certs`: the site CA and host certificates two sites pair with (docs/secondary-site.md).
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs", abstract: "Create the site CA and host certificates for mutual TLS between sites.",
        subcommands: [Init.self, Issue.self, Show.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a site CA and this host's certificate and key in the PKI directory.")
        @Option(help: "This host's name as the other site reaches it (DNS name or IP address).") var name: String
        @Option(help: "PKI directory (default \(PKIDirectory.defaultPath)).") var pki: String?
        @Option(help: "Days the CA and this host's certificate stay valid.") var validDays = 3650

        func run() throws {
            let directory = try PKIDirectory.initialize(name: name, at: pki ?? PKIDirectory.defaultPath, validDays: validDays)
            print("site CA and certificate for \(name) written to \(directory.path) (keep \(PKIDirectory.caKeyFile) on this host only)")
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a PKI directory for another host (CA certificate, its certificate and key) to copy there.")
        @Argument(help: "The other host's name as this site reaches it (DNS name or IP address).") var host: String
        @Option(help: "Directory to write (new or empty); copy it to the other host's PKI directory.") var out: String
        @Option(help: "This site's PKI directory, holding the CA key (default \(PKIDirectory.defaultPath)).") var pki: String?
        @Option(help: "Days the certificate stays valid.") var validDays = 825

        func run() throws {
            try PKIDirectory(path: pki).issue(host: host, to: out, validDays: validDays)
            print("certificate for \(host) written to \(out): copy it to \(PKIDirectory.defaultPath) on \(host) (or pass --pki there)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the site CA and this host's certificate.")
        @Option(help: "PKI directory (default \(PKIDirectory.defaultPath)).") var pki: String?

        func run() throws {
            for line in try PKIDirectory(path: pki).summary() { print(line) }
        }
    }
}
