import Foundation
import NIOSSL
import ReplicaSystem
import Testing
@testable import ReplicaNet

/// The client TLS configuration is parsed once per version of the PKI files: the same files
/// give the cached configuration, a rotated certificate is read again at the next open, and a
/// key made readable by others is refused as without the cache.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PKIConfigurationCacheTests {
    static func name(_ config: TLSConfiguration) -> String? {
        guard case .certificate(let certificate)? = config.certificateChain.first else { return nil }
        return PKIDirectory.peerName(of: certificate)
    }

    @Test func unchangedFilesAreParsedOnceAndARotatedCertificateIsReadAgain() throws {
        let root = "/tmp/net-pki-cache-\(UUID().uuidString.prefix(8))"
        defer { try? FileSystem.removeTree(root) }
        let site = try PKIDirectory.initialize(name: "127.0.0.1", at: root + "/a")
        try site.issue(host: "first", to: root + "/b")
        try site.issue(host: "second", to: root + "/c")
        let b = PKIDirectory(path: root + "/b")

        let loads = PKIConfigurationCache.loads
        let one = try PKIConfigurationCache.clientTLSConfiguration(b)
        let two = try PKIConfigurationCache.clientTLSConfiguration(b)
        #expect(PKIConfigurationCache.loads == loads + 1)
        #expect(one.bestEffortEquals(two))
        #expect(Self.name(two) == "first")

        // Rotation: the host's new certificate and key replace the files (renamed over them, mode kept).
        for file in [PKIDirectory.certificateFile, PKIDirectory.keyFile] {
            #expect(rename(root + "/c/" + file, root + "/b/" + file) == 0)
        }
        let three = try PKIConfigurationCache.clientTLSConfiguration(b)
        #expect(PKIConfigurationCache.loads == loads + 2)
        #expect(Self.name(three) == "second")
        #expect(!three.bestEffortEquals(one))

        // A key others can read is refused, cached or not.
        #expect(chmod(root + "/b/" + PKIDirectory.keyFile, 0o644) == 0)
        #expect(throws: ReplicaError.self) { try PKIConfigurationCache.clientTLSConfiguration(b) }
    }
}
