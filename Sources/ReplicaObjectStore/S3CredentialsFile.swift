import Foundation
import ReplicaSystem

/// AWS's shared credentials file: INI sections named by profile, holding
/// `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token`.
public enum S3CredentialsFile {
    public static func read(_ path: String, profile: String) throws -> SigV4Signer.Credentials {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ReplicaError("cannot read the credentials file \(path): \(error.localizedDescription)", kind: .nonRecoverable)
        }
        return try parse(text, profile: profile, path: path)
    }

    public static func parse(_ text: String, profile: String, path: String) throws -> SigV4Signer.Credentials {
        var section: String?
        var values: [String: String] = [:]
        var found = false
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                var name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("profile ") { name = name.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces) }
                section = name
                if name == profile { found = true }
                continue
            }
            guard section == profile, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            values[key] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        guard found else { throw ReplicaError("credentials file \(path) has no profile [\(profile)]", kind: .nonRecoverable) }
        guard let key = values["aws_access_key_id"], !key.isEmpty,
              let secret = values["aws_secret_access_key"], !secret.isEmpty else {
            throw ReplicaError("credentials file \(path), profile [\(profile)]: aws_access_key_id or aws_secret_access_key is missing",
                               kind: .nonRecoverable)
        }
        let token = values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
        return .init(accessKeyID: key, secretAccessKey: secret, sessionToken: token)
    }
}
