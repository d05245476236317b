import Foundation
import Testing

/// `replicafs certs` as an operator runs it: init, issue for another host, show; and each bad
/// input refused on one line with a non-zero exit, nothing overwritten.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CertsCommandTests {
    let dir = "/tmp/net-tls-certs-\(UUID().uuidString.prefix(8))"

    func refuses(_ args: String, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let r = Shell.run("\"$RFS\" \(args)")
        #expect(!r.ok, "expected failure: replicafs \(args)", sourceLocation: sourceLocation)
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(message),
                "replicafs \(args): stderr was \(r.stderr)", sourceLocation: sourceLocation)
    }

    @Test func initIssueAndShowMakeAPairedSite() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        Shell.must("\"$RFS\" certs init --name site-a.example --pki \(dir)/a")
        Shell.must("\"$RFS\" certs issue 10.77.0.2 --out \(dir)/b --pki \(dir)/a")
        #expect(Shell.must("stat -c %a \(dir)/a/key.pem \(dir)/a/ca-key.pem \(dir)/b/key.pem") == "600\n600\n600")
        #expect(!FileManager.default.fileExists(atPath: dir + "/b/ca-key.pem"), "the CA key left the first site")
        // The certificates as OpenSSL reads them: signed by the site CA, with the names asked for.
        Shell.must("openssl verify -CAfile \(dir)/a/ca.pem \(dir)/a/cert.pem \(dir)/b/cert.pem")
        let b = Shell.must("openssl x509 -in \(dir)/b/cert.pem -noout -text")
        #expect(b.contains("IP Address:10.77.0.2") && b.contains("DNS:10.77.0.2") && b.contains("TLS Web Client Authentication"), "\(b)")
        #expect(Shell.must("cmp \(dir)/a/ca.pem \(dir)/b/ca.pem").isEmpty)
        let show = Shell.must("\"$RFS\" certs show --pki \(dir)/b")
        #expect(show.contains("CN=10.77.0.2") && show.contains("CN=ReplicaFS site CA (site-a.example)") && !show.contains("EXPIRED"), "\(show)")
    }

    @Test func badInputIsRefusedAndNothingIsOverwritten() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        refuses("certs show --pki \(dir)/none", "no PKI directory at \(dir)/none (ca.pem missing): run `replicafs certs init --name <host> --pki \(dir)/none`")
        refuses("certs issue hostb --out \(dir)/b --pki \(dir)/none", "no PKI directory at \(dir)/none")
        refuses("certs init --name 'bad name' --pki \(dir)/a", "bad host name 'bad name'")
        Shell.must("\"$RFS\" certs init --name site-a --pki \(dir)/a")
        let before = Shell.must("sha256sum \(dir)/a/*")
        refuses("certs init --name site-a --pki \(dir)/a", "already holds a site CA")
        Shell.must("\"$RFS\" certs issue hostb --out \(dir)/b --pki \(dir)/a")
        refuses("certs issue hostb --out \(dir)/b --pki \(dir)/a", "choose an empty directory")
        // A copied directory has no CA key: it cannot issue.
        refuses("certs issue hostc --out \(dir)/c --pki \(dir)/b", "ca-key.pem is missing")
        Shell.must("chmod 644 \(dir)/a/ca-key.pem")
        refuses("certs issue hostc --out \(dir)/c --pki \(dir)/a", "is readable by others (mode 644)")
        Shell.must("chmod 600 \(dir)/a/ca-key.pem")
        refuses("certs init --name site-a --pki \(dir)/x --valid-days 0", "at least one day")
        #expect(Shell.must("sha256sum \(dir)/a/*") == before)
    }
}
