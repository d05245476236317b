import Crypto
import Dispatch
import Foundation
import NIOCore
import ReplicaStore
import ReplicaSystem
import Synchronization

/// Uploads: one PUT up to `partSize`, else a multipart upload with `parallelism` parts in
/// flight, each part's SHA-256 signed (the server checks the bytes it got against it). An
/// interrupted upload of the same key is found again (ListMultipartUploads), its stored parts
/// listed (ListParts) and kept when their MD5 (the part's ETag) equals the local bytes', so
/// only the missing parts are sent before the upload is completed.
extension S3Bucket {
    /// S3's limits: parts of at least 5 MiB (but the last), at most 10000 parts.
    public static let minimumPartSize = 5 << 20
    public static let maximumParts = 10_000

    @discardableResult
    public func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        let size = try source.size()
        var partSize = max(partSize, Self.minimumPartSize)
        if size <= Int64(partSize) {
            var bytes = [UInt8](repeating: 0, count: Int(size))
            let n = try bytes.withUnsafeMutableBytes { try source.read(into: $0.baseAddress!, count: Int(size), offset: 0) }
            guard n == Int(size) else { throw Self.shrunk(source, key) }
            let etag = try put(key, bytes, condition: .none)
            progress?(size)
            return etag
        }
        while (size + Int64(partSize) - 1) / Int64(partSize) > Int64(Self.maximumParts) { partSize *= 2 }
        let layout = PartLayout(size: size, partSize: partSize)

        var stored: [Int: StoredPart] = [:]
        let uploadID: String
        if let found = try findUpload(key) {
            uploadID = found
            stored = try listParts(key, uploadID: uploadID) ?? [:]
            count { $0.uploadsResumed += 1 }
        } else {
            uploadID = try initiate(key)
        }
        let etags = try sendParts(key, uploadID: uploadID, source: source, layout: layout, stored: stored, progress: progress)
        return try complete(key, uploadID: uploadID, etags: etags, size: size)
    }

    // MARK: Parts

    struct PartLayout: Sendable {
        let size: Int64
        let partSize: Int
        var count: Int { Int((size + Int64(partSize) - 1) / Int64(partSize)) }
        /// Offset and length of part `number` (1-based).
        func range(_ number: Int) -> (offset: Int64, length: Int) {
            let offset = Int64(number - 1) * Int64(partSize)
            return (offset, Int(min(Int64(partSize), size - offset)))
        }
    }

    struct StoredPart: Sendable {
        let etag: String
        let size: Int64
    }

    /// What the part workers share: the next part to take, the ETags, bytes done, the first
    /// error; `wake` tells the waiting caller that something changed.
    private final class PartsState: Sendable {
        struct Fields {
            var next = 1
            var etags: [Int: String] = [:]
            var bytesDone: Int64 = 0
            var error: Error?
            var workersLeft: Int
        }
        let fields: Mutex<Fields>
        let wake = DispatchSemaphore(value: 0)
        init(workers: Int) { fields = Mutex(Fields(workersLeft: workers)) }

        /// The next part to send, nil when all are taken or one failed.
        func take(upTo count: Int) -> Int? {
            fields.withLock { f in
                guard f.error == nil, f.next <= count else { return nil }
                f.next += 1
                return f.next - 1
            }
        }
    }

    /// Sends every part not stored already, `parallelism` at a time on threads of their own
    /// (each waits on its request's future); the caller's thread waits and reports progress.
    private func sendParts(_ key: String, uploadID: String, source: SourceFile, layout: PartLayout,
                           stored: [Int: StoredPart], progress: ((Int64) -> Void)?) throws -> [Int: String] {
        let workers = min(parallelism, layout.count)
        let state = PartsState(workers: workers)
        for _ in 0..<workers {
            let thread = Thread { [self] in
                defer {
                    state.fields.withLock { $0.workersLeft -= 1 }
                    state.wake.signal()
                }
                do {
                    while let number = state.take(upTo: layout.count) {
                        let etag = try sendPart(number, key: key, uploadID: uploadID, source: source, layout: layout,
                                                stored: stored[number])
                        state.fields.withLock {
                            $0.etags[number] = etag
                            $0.bytesDone += Int64(layout.range(number).length)
                        }
                        state.wake.signal()
                        // Test hook: a kill -9 of the server while the upload is unfinished.
                        FaultPoint.reach("s3-upload-part")
                    }
                } catch {
                    state.fields.withLock { if $0.error == nil { $0.error = error } }
                }
            }
            thread.name = "s3-upload"
            thread.start()
        }
        var reported: Int64 = -1
        while true {
            state.wake.wait()
            let (done, left, error, etags) = state.fields.withLock { ($0.bytesDone, $0.workersLeft, $0.error, $0.etags) }
            if done != reported, error == nil {
                progress?(done)
                reported = done
            }
            if left == 0 {
                if let error { throw error }
                return etags
            }
        }
    }

    /// One part: kept when the stored part has its size and MD5, else sent.
    private func sendPart(_ number: Int, key: String, uploadID: String, source: SourceFile, layout: PartLayout,
                          stored: StoredPart?) throws -> String {
        let (offset, length) = layout.range(number)
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
            try source.read(into: raw.baseAddress!, count: length, offset: offset)
        }
        guard n == length else { throw Self.shrunk(source, key) }
        if let stored, stored.size == Int64(length) {
            let md5 = buffer.withUnsafeReadableBytes { SigV4Signer.hex(Insecure.MD5.hash(data: $0)) }
            if md5 == stored.etag {
                count { $0.partsReused += 1 }
                return stored.etag
            }
        }
        let payload = buffer.withUnsafeReadableBytes { SigV4Signer.Payload.hash(of: $0) }
        let response = try send(.PUT, key: key, query: [("partNumber", "\(number)"), ("uploadId", uploadID)], body: buffer,
                                payload: payload, operation: "PUT part \(number) of", accept: [200])
        count {
            $0.partsSent += 1
            $0.bytesSent += Int64(length)
        }
        return Self.etag(response.headers)
    }

    // MARK: Multipart requests

    /// The newest unfinished upload of `key`, if any (older ones are aborted: they only hold space).
    func findUpload(_ key: String) throws -> String? {
        let fullKey = url.prefix + key
        var uploads: [(initiated: String, id: String)] = []
        var markers: [(String, String)] = []
        while true {
            let response = try send(.GET, key: nil, query: [("uploads", ""), ("prefix", fullKey)] + markers,
                                    operation: "LIST UPLOADS", accept: [200])
            guard let root = S3XMLElement.parse(response.bytes), root.name == "ListMultipartUploadsResult" else {
                throw ReplicaError("S3 LIST UPLOADS \(key) at \(location): the answer is not a ListMultipartUploadsResult",
                                   kind: .recoverable)
            }
            for upload in root.all("Upload") where upload.value("Key") == fullKey {
                if let id = upload.value("UploadId") { uploads.append((upload.value("Initiated") ?? "", id)) }
            }
            guard root.value("IsTruncated") == "true", let keyMarker = root.value("NextKeyMarker"),
                  let idMarker = root.value("NextUploadIdMarker") else { break }
            markers = [("key-marker", keyMarker), ("upload-id-marker", idMarker)]
        }
        uploads.sort { $0.initiated < $1.initiated }
        guard let newest = uploads.popLast() else { return nil }
        for old in uploads { try? abort(key, uploadID: old.id) }
        return newest.id
    }

    public func abortUploads(prefix: String) throws {
        var found: [(key: String, id: String)] = []
        var markers: [(String, String)] = []
        while true {
            let response = try send(.GET, key: nil, query: [("uploads", ""), ("prefix", url.prefix + prefix)] + markers,
                                    operation: "LIST UPLOADS", accept: [200])
            guard let root = S3XMLElement.parse(response.bytes), root.name == "ListMultipartUploadsResult" else {
                throw ReplicaError("S3 LIST UPLOADS \(prefix) at \(location): the answer is not a ListMultipartUploadsResult",
                                   kind: .recoverable)
            }
            for upload in root.all("Upload") {
                guard let key = upload.value("Key"), key.hasPrefix(url.prefix), let id = upload.value("UploadId") else { continue }
                found.append((String(key.dropFirst(url.prefix.count)), id))
            }
            guard root.value("IsTruncated") == "true", let keyMarker = root.value("NextKeyMarker"),
                  let idMarker = root.value("NextUploadIdMarker") else { break }
            markers = [("key-marker", keyMarker), ("upload-id-marker", idMarker)]
        }
        for upload in found { try abort(upload.key, uploadID: upload.id) }
    }

    /// The parts stored for an upload by number; nil when the upload is gone.
    func listParts(_ key: String, uploadID: String) throws -> [Int: StoredPart]? {
        var parts: [Int: StoredPart] = [:]
        var marker: String?
        while true {
            var query = [("uploadId", uploadID)]
            if let marker { query.append(("part-number-marker", marker)) }
            let response = try send(.GET, key: key, query: query, operation: "LIST PARTS", accept: [200, 404])
            if response.status == 404 { return nil }
            guard let root = S3XMLElement.parse(response.bytes), root.name == "ListPartsResult" else {
                throw ReplicaError("S3 LIST PARTS \(key) at \(location): the answer is not a ListPartsResult", kind: .recoverable)
            }
            for part in root.all("Part") {
                guard let number = part.value("PartNumber").flatMap({ Int($0) }),
                      let size = part.value("Size").flatMap({ Int64($0) }) else { continue }
                parts[number] = StoredPart(etag: Self.unquoted(part.value("ETag") ?? ""), size: size)
            }
            guard root.value("IsTruncated") == "true", let next = root.value("NextPartNumberMarker") else { break }
            marker = next
        }
        return parts
    }

    func initiate(_ key: String) throws -> String {
        let response = try send(.POST, key: key, query: [("uploads", "")], operation: "START UPLOAD", accept: [200])
        guard let id = S3XMLElement.parse(response.bytes)?.value("UploadId"), !id.isEmpty else {
            throw ReplicaError("S3 START UPLOAD \(key) at \(location): no UploadId in the answer", kind: .recoverable)
        }
        return id
    }

    func abort(_ key: String, uploadID: String) throws {
        _ = try send(.DELETE, key: key, query: [("uploadId", uploadID)], operation: "ABORT UPLOAD", accept: [200, 204, 404])
    }

    /// Completes the upload from the parts' ETags. A completion whose answer was lost and that
    /// finds the upload gone accepts the object when it has the upload's size and part count.
    private func complete(_ key: String, uploadID: String, etags: [Int: String], size: Int64) throws -> String {
        var xml = "<CompleteMultipartUpload>"
        for number in etags.keys.sorted() {
            xml += "<Part><PartNumber>\(number)</PartNumber><ETag>\(Self.quoted(etags[number]!))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        var buffer = ByteBufferAllocator().buffer(capacity: body.count)
        buffer.writeBytes(body)
        let response = try send(.POST, key: key, query: [("uploadId", uploadID)], headers: [("Content-Type", "application/xml")],
                                body: buffer, payload: .hash(of: body), operation: "COMPLETE UPLOAD", accept: [200, 404])
        let root = S3XMLElement.parse(response.bytes)
        if response.status == 404 || root?.name == "Error" {
            let code = root?.value("Code") ?? ""
            if code == "NoSuchUpload", let info = try head(key), info.size == size, info.etag.hasSuffix("-\(etags.count)") {
                return info.etag
            }
            // S3 may answer 200 with an error document when completion fails late.
            throw S3Failure.error(status: response.status == 404 ? 404 : 500, body: response.bytes, operation: "COMPLETE UPLOAD",
                                  what: "\(url)/\(key)", bucket: url.bucket, endpoint: configuration.endpoint)
        }
        if let etag = root?.value("ETag").map(Self.unquoted), !etag.isEmpty { return etag }
        // RGW 16's answer may carry its ETag as an entity XMLParser drops: ask for it.
        guard let info = try head(key), !info.etag.isEmpty else {
            throw ReplicaError("S3 COMPLETE UPLOAD \(key) at \(location): no ETag in the answer", kind: .recoverable)
        }
        return info.etag
    }

    static func shrunk(_ source: SourceFile, _ key: String) -> ReplicaError {
        ReplicaError("\(source.localPath) became shorter while it was uploaded as \(key)", kind: .nonRecoverable)
    }
}
