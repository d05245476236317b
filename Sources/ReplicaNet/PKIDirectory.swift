import Crypto
import Foundation
import NIOSSL
import ReplicaSystem
import SwiftASN1
import X509

/// A site's PKI directory: the site CA certificate (`ca.pem`), this host's certificate
/// (`cert.pem`) and key (`key.pem`, mode 0600), and on the site that ran `certs init` the CA's
/// key (`ca-key.pem`, 0600) that issues certificates for the other hosts. Every host of a site
/// trusts the site CA only, so two hosts pair by sharing one CA, never the system's roots.
public struct PKIDirectory: Sendable {
    /// Where `serve`, `protect` and the failback commands look when `--pki` is not given.
    public static let defaultPath = "/etc/replicafs/pki"
    public static let caFile = "ca.pem"
    public static let caKeyFile = "ca-key.pem"
    public static let certificateFile = "cert.pem"
    public static let keyFile = "key.pem"

    public let path: String

    /// The directory at `path`, or the default one when nil. Nothing is read until used.
    public init(path: String?) {
        self.path = path ?? Self.defaultPath
    }

    /// Creates a site CA and this host's certificate and key in `path` (created if needed).
    /// Refuses a directory that already holds a CA: a second CA would split the site.
    public static func initialize(name: String, at path: String, validDays: Int = 3650) throws -> PKIDirectory {
        try checkHostName(name)
        guard validDays > 0 else { throw ReplicaError("certificate validity must be at least one day, not \(validDays)", code: .badRequest) }
        let pki = PKIDirectory(path: path)
        for file in [caFile, caKeyFile] where FileSystem.exists(pki.file(file)) {
            throw ReplicaError("\(pki.file(file)) exists: \(path) already holds a site CA; remove the directory to start a new site",
                               code: .badRequest)
        }
        try FileSystem.mkdirs(path, mode: 0o755)
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("ReplicaFS")
            CommonName("ReplicaFS site CA (\(name))")
        }
        let caPublic = Certificate.PublicKey(caKey.publicKey)
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: caPublic,
            notValidBefore: now - clockSkew, notValidAfter: now + Double(validDays) * 86_400,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: caPublic)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        // The CA key first: a crash between the files leaves a directory `initialize` refuses,
        // never a CA certificate whose key is lost.
        try write(caKey.pemRepresentation, to: pki.file(caKeyFile), mode: 0o600)
        try write(try ca.serializeAsPEM().pemString, to: pki.file(caFile), mode: 0o644)
        try pki.writeHost(name, ca: ca, caKey: caKey, to: path, notValidBefore: now - clockSkew, validDays: validDays)
        return pki
    }

    /// Writes a PKI directory for another host into `outDir`: the site CA certificate, that
    /// host's certificate (signed by the site CA) and its key (0600), ready to copy there.
    /// `notValidBefore` is for tests of expired certificates; nil is now (less a few minutes
    /// for clocks that differ). Refuses a directory that already holds a certificate or key.
    public func issue(host: String, to outDir: String, validDays: Int = 825, notValidBefore: Date? = nil) throws {
        try Self.checkHostName(host)
        guard validDays > 0 else { throw ReplicaError("certificate validity must be at least one day, not \(validDays)", code: .badRequest) }
        let ca = try loadCA()
        guard FileSystem.exists(file(Self.caKeyFile)) else {
            throw ReplicaError("\(file(Self.caKeyFile)) is missing: certificates are issued on the site that ran `replicafs certs init`",
                               kind: .nonRecoverable, code: .badRequest)
        }
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: try Self.readKey(file(Self.caKeyFile)))
        guard Certificate.PublicKey(caKey.publicKey) == ca.publicKey else {
            throw ReplicaError("\(file(Self.caKeyFile)) is not the key of \(file(Self.caFile))", kind: .nonRecoverable)
        }
        for name in [Self.caFile, Self.certificateFile, Self.keyFile, Self.caKeyFile] where FileSystem.exists(outDir + "/" + name) {
            throw ReplicaError("\(outDir)/\(name) exists: choose an empty directory for \(host)'s certificate", code: .badRequest)
        }
        try FileSystem.mkdirs(outDir, mode: 0o755)
        try Self.write(try ca.serializeAsPEM().pemString, to: outDir + "/" + Self.caFile, mode: 0o644)
        try writeHost(host, ca: ca, caKey: caKey, to: outDir,
                      notValidBefore: notValidBefore ?? Date() - Self.clockSkew, validDays: validDays)
    }

    /// TLS for the receiver: presents this host's certificate, requires a client certificate
    /// and accepts only one signed by the site CA (TLS 1.3; the client's name is read with
    /// `peerName(of:)`, not matched against its address).
    public func serverTLSConfiguration() throws -> TLSConfiguration {
        let identity = try loadIdentity()
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(identity.certificate)], privateKey: .privateKey(identity.key))
        config.certificateVerification = .noHostnameVerification
        config.trustRoots = .certificates([identity.ca])
        config.minimumTLSVersion = .tlsv13
        return config
    }

    /// TLS for a sender: presents this host's certificate and trusts the site CA only, with
    /// full verification including the receiver's host name (DNS name or IP address SAN).
    public func clientTLSConfiguration() throws -> TLSConfiguration {
        let identity = try loadIdentity()
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateChain = [.certificate(identity.certificate)]
        config.privateKey = .privateKey(identity.key)
        config.certificateVerification = .fullVerification
        config.trustRoots = .certificates([identity.ca])
        config.minimumTLSVersion = .tlsv13
        return config
    }

    /// The name this host's certificate was issued for (its common name).
    public func hostName() throws -> String {
        try requirePresent()
        let certificate = try Self.readCertificate(file(Self.certificateFile))
        guard let name = Self.commonName(of: certificate) else {
            throw ReplicaError("\(file(Self.certificateFile)) names no host (no common name)", kind: .nonRecoverable)
        }
        return name
    }

    /// The host name an authenticated peer's certificate was issued for (common name, else
    /// its first DNS name), or nil for a certificate that names none. On a NIO channel the
    /// certificate comes from `channel.nioSSL_peerCertificate()` after the handshake; only
    /// certificates the site CA signed get that far.
    public static func peerName(of certificate: NIOSSLCertificate) -> String? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der) else { return nil }
        if let name = commonName(of: parsed) { return name }
        if let names = try? parsed.extensions.subjectAlternativeNames {
            for case .dnsName(let name) in names { return name }
        }
        return nil
    }

    /// The site CA and this host's certificate (subject, issuer, validity, names), for `certs show`.
    public func summary(now: Date = Date()) throws -> [String] {
        try requirePresent()
        var lines: [String] = []
        let format = ISO8601DateFormatter()
        for (label, name) in [("site CA", Self.caFile), ("this host", Self.certificateFile)] {
            let certificate = try Self.readCertificate(file(name))
            lines.append("\(label) (\(file(name))):")
            lines.append("  subject: \(certificate.subject)")
            lines.append("  issuer:  \(certificate.issuer)")
            let state = certificate.notValidAfter < now ? " (EXPIRED)" : certificate.notValidBefore > now ? " (NOT YET VALID)" : ""
            lines.append("  valid:   \(format.string(from: certificate.notValidBefore)) to \(format.string(from: certificate.notValidAfter))\(state)")
            if let names = try? certificate.extensions.subjectAlternativeNames {
                lines.append("  names:   \(names.map { "\($0)" }.joined(separator: ", "))")
            }
        }
        return lines
    }

    // MARK: - Files

    func file(_ name: String) -> String { path + "/" + name }

    /// Certificates are dated a few minutes back so a peer whose clock is slightly behind
    /// still accepts a certificate made just now.
    static let clockSkew: TimeInterval = 300

    private struct Identity {
        let ca: NIOSSLCertificate
        let certificate: NIOSSLCertificate
        let key: NIOSSLPrivateKey
    }

    /// A PKI directory without its CA certificate is no PKI directory: one line that says how to make one.
    private func requirePresent() throws {
        guard FileSystem.exists(file(Self.caFile)) else {
            throw ReplicaError("no PKI directory at \(path) (\(Self.caFile) missing): run `replicafs certs init --name <host> --pki \(path)`"
                + " on the first site, or copy there the directory `replicafs certs issue` wrote for this host",
                kind: .nonRecoverable, code: .badRequest)
        }
        for name in [Self.certificateFile, Self.keyFile] where !FileSystem.exists(file(name)) {
            throw ReplicaError("\(file(name)) is missing: \(path) holds no certificate for this host", kind: .nonRecoverable, code: .badRequest)
        }
    }

    private func loadCA() throws -> Certificate {
        try requirePresent()
        return try Self.readCertificate(file(Self.caFile))
    }

    private func loadIdentity() throws -> Identity {
        try requirePresent()
        let keyPEM = try Self.readKey(file(Self.keyFile))
        do {
            return Identity(
                ca: try NIOSSLCertificate(bytes: try FileSystem.readFile(file(Self.caFile)), format: .pem),
                certificate: try NIOSSLCertificate(bytes: try FileSystem.readFile(file(Self.certificateFile)), format: .pem),
                key: try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        } catch {
            throw ReplicaError("unreadable certificate or key in \(path): \(error)", kind: .nonRecoverable)
        }
    }

    static func readCertificate(_ path: String) throws -> Certificate {
        let text = String(decoding: try FileSystem.readFile(path), as: UTF8.self)
        do {
            return try Certificate(pemEncoded: text)
        } catch {
            throw ReplicaError("\(path) is not a PEM certificate: \(error)", kind: .nonRecoverable)
        }
    }

    /// A private key that others can read is refused, not used: it may be compromised.
    private static func readKey(_ path: String) throws -> String {
        let st = try FileSystem.stat(path)
        if st.st_mode & 0o077 != 0 {
            throw ReplicaError("key file \(path) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))): run `chmod 600 \(path)`",
                               kind: .nonRecoverable)
        }
        return String(decoding: try FileSystem.readFile(path), as: UTF8.self)
    }

    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBytes { try FileSystem.writeAtomically(path, UnsafeRawBufferPointer($0), mode: mode) }
    }

    // MARK: - Certificates

    /// A host certificate and key in `dir`: usable both as a server (receiver) and as a client
    /// (sender), since failback turns the roles around.
    private func writeHost(_ host: String, ca: Certificate, caKey: P256.Signing.PrivateKey, to dir: String,
                           notValidBefore: Date, validDays: Int) throws {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        var names: [GeneralName] = [.dnsName(host)]
        if let address = Self.ipAddressBytes(host) {
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(address))))
        }
        let authorityKey = try ca.extensions.subjectKeyIdentifier?.keyIdentifier
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: notValidBefore, notValidAfter: notValidBefore + Double(validDays) * 86_400,
            issuer: ca.subject,
            subject: try DistinguishedName {
                OrganizationName("ReplicaFS")
                CommonName(host)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: authorityKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        try Self.write(key.pemRepresentation, to: dir + "/" + Self.keyFile, mode: 0o600)
        try Self.write(try certificate.serializeAsPEM().pemString, to: dir + "/" + Self.certificateFile, mode: 0o644)
    }

    static func commonName(of certificate: Certificate) -> String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                if let name = String(attribute.value) { return name }
            }
        }
        return nil
    }

    /// The address bytes (4 or 16) when `host` is an IPv4 or IPv6 address, else nil.
    static func ipAddressBytes(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    /// Host names as DNS allows them (letters, digits, '-', '.'), or an IP address.
    static func checkHostName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
        guard !name.isEmpty, name.count <= 253, ipAddressBytes(name) != nil || name.allSatisfy({ allowed.contains($0) }),
              !name.hasPrefix("-"), !name.hasPrefix(".")
        else {
            throw ReplicaError("bad host name '\(name)': use a DNS name (letters, digits, '-', '.') or an IP address", code: .badRequest)
        }
    }
}
