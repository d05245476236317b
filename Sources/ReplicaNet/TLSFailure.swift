import NIOCore
import NIOSSL
import ReplicaSystem

/// Turns the errors of a refused TLS connection (NIOSSL's, BoringSSL's error stack) into one
/// line an operator can act on. A refused certificate is `.nonRecoverable`: waiting does not
/// make a certificate valid, so the VM goes Critical instead of retrying forever. Errors that
/// are no TLS refusal (a cut link, a refused connection) are left to the caller (nil).
public enum TLSFailure {
    /// Why the handshake was refused, as a short phrase.
    public enum Cause: String, Sendable, Equatable {
        case unknownCA = "certificate not signed by the site CA"
        case expired = "certificate expired"
        case notYetValid = "certificate not yet valid"
        case hostNameMismatch = "host name mismatch"
        case noPeerCertificate = "peer did not present a certificate"
        case notTLS = "the other side does not speak TLS (plain TCP)"
        case badCertificate = "certificate refused"
        /// This side's verification failed; BoringSSL does not say which check (see `diagnose`).
        case verificationFailed = "certificate not signed by the site CA, expired or not yet valid"
        case protocolMismatch = "no common TLS version or cipher"
    }

    /// Who refused: this side refused the peer's certificate, or the peer refused ours.
    public enum Side: Sendable, Equatable {
        case local, peer
    }

    /// The cause and the refusing side of `error`, or nil when it is no TLS refusal.
    public static func classify(_ error: any Error) -> (cause: Cause, side: Side)? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname || extra == .serverHostnameImpossibleToMatch {
            return (.hostNameMismatch, .local)
        }
        if let ssl = error as? NIOSSLError {
            switch ssl {
            case .noCertificateToValidate: return (.noPeerCertificate, .local)
            case .handshakeFailed(let boring), .shutdownFailed(let boring): return classify(text: "\(boring)")
            default: break
            }
        }
        if let boring = error as? BoringSSLError { return classify(text: "\(boring)") }
        // Wrappers (the HTTP client's own error types) still carry the text of what they wrap.
        return classify(text: String(describing: error))
    }

    /// The cause from BoringSSL's reason codes (the upper-case names in its error text).
    static func classify(text: String) -> (cause: Cause, side: Side)? {
        let table: [(String, Cause, Side)] = [
            ("failedToValidateHostname", .hostNameMismatch, .local),
            // The peer's alert tells exactly why it refused our certificate.
            ("TLSV1_ALERT_UNKNOWN_CA", .unknownCA, .peer),
            ("SSLV3_ALERT_CERTIFICATE_EXPIRED", .expired, .peer),
            ("TLSV1_ALERT_CERTIFICATE_REQUIRED", .noPeerCertificate, .peer),
            ("SSLV3_ALERT_BAD_CERTIFICATE", .badCertificate, .peer),
            ("SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", .badCertificate, .peer),
            ("TLSV1_ALERT_DECRYPT_ERROR", .badCertificate, .peer),
            ("TLSV1_ALERT_PROTOCOL_VERSION", .protocolMismatch, .peer),
            ("SSLV3_ALERT_HANDSHAKE_FAILURE", .protocolMismatch, .peer),
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", .noPeerCertificate, .local),
            ("WRONG_VERSION_NUMBER", .notTLS, .local),
            ("HTTP_REQUEST", .notTLS, .local),
            ("HTTPS_PROXY_REQUEST", .notTLS, .local),
            ("PACKET_LENGTH_TOO_LONG", .notTLS, .local),
            ("RECORD_LENGTH_MISMATCH", .notTLS, .local),
            ("UNSUPPORTED_PROTOCOL", .protocolMismatch, .local),
            ("NO_SHARED_CIPHER", .protocolMismatch, .local),
            // This side's verification failed; BoringSSL's stack does not say why (the
            // alert the peer receives does), so the caller refines it with `diagnose`.
            ("CERTIFICATE_VERIFY_FAILED", .verificationFailed, .local),
        ]
        for (code, cause, side) in table where text.contains(code) {
            return (cause, side)
        }
        return nil
    }

    /// A one-line `.nonRecoverable` error for a refused connection to or from `peer`, or nil
    /// when `error` is no TLS refusal. `cause` overrides the classified one (a diagnosis).
    public static func replicaError(_ error: any Error, peer: String, cause: Cause? = nil) -> ReplicaError? {
        guard let found = classify(error) else { return nil }
        let why = cause ?? found.cause
        let message: String
        switch (why, found.side) {
        case (.notTLS, _):
            message = "TLS connection with \(peer) refused: \(why.rawValue)"
        case (.noPeerCertificate, .peer):
            message = "TLS connection to \(peer) refused: \(why.rawValue) (this host sent none: check its PKI directory)"
        case (.noPeerCertificate, .local):
            message = "TLS connection from \(peer) refused: \(why.rawValue)"
        case (.hostNameMismatch, _):
            message = "TLS connection to \(peer) refused: \(why.rawValue) (its certificate is not issued for \(peer))"
        case (_, .peer):
            message = "TLS connection with \(peer) refused by the peer: this host's \(why.rawValue)"
        case (_, .local):
            message = "TLS connection with \(peer) refused: its \(why.rawValue)"
        }
        return ReplicaError(message, kind: .nonRecoverable)
    }

    /// Any failed connection to `peer` as a one-line ReplicaError: a TLS refusal is
    /// `.nonRecoverable` (as above); anything else (refused, timed out, reset, a cut link) is
    /// `.recoverable`, since the link may come back and the transfer resume.
    public static func connectionError(_ error: any Error, peer: String) -> ReplicaError {
        if let refused = replicaError(error, peer: peer) { return refused }
        if let replica = error as? ReplicaError { return replica }
        return ReplicaError("connection to \(peer) failed: \(String(describing: error).split(separator: "\n").first ?? "")",
                            kind: .recoverable)
    }
}
