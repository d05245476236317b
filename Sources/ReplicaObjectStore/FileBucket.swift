import Crypto
import Foundation
import ReplicaStore
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An `ObjectBucket` over a local directory: each object is a file named by its key (the
/// key's "/" are directories). It keeps the semantics the object store relies on: a put is
/// atomic and durable (a temporary file, fsync, rename, fsync of the directory), conditional
/// puts are checked and done under one lock (one writer process per directory: the receiver),
/// ranged reads are preads, listings are in key order, ETags are S3's (MD5, and the multipart
/// form for uploads larger than a part). The encrypted receiver store
/// (docs/secondary-site.md, "Encryption at rest") is an `ObjectStore` over this wrapped in a
/// `SealedBucket`. Names starting with "." are never keys (temporary files).
public final class FileBucket: ObjectBucket {
    public let root: String
    private let lock = Mutex(())

    /// A bucket in `root` (created, mode 0700, when missing). Temporary files a crash left
    /// (".tmp-*") are never listed or read.
    public init(root: String) throws {
        self.root = root
        try FileSystem.mkdirs(root, mode: 0o700)
    }

    public var location: String { "file-bucket:\(root)" }

    /// The file of `key`, or an error for a key that could leave the directory or hide a file.
    func path(_ key: String) throws -> String {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, parts.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(".") }) else {
            throw ReplicaError("bad object key '\(key)' for \(location)", kind: .nonRecoverable, code: .badRequest)
        }
        return root + "/" + key
    }

    private static func quoted(_ hex: String) -> String { "\"" + hex + "\"" }

    private static func md5(_ bytes: UnsafeRawBufferPointer) -> String { ObjectDigest.hex(Insecure.MD5.hash(data: bytes)) }

    /// Writes a new file beside `path` with `fill`, makes it durable and renames it over `path`.
    private func replace(_ path: String, _ fill: (FileDescriptor) throws -> Void) throws {
        let dir = String(path[..<path.lastIndex(of: "/")!])
        let tmp = dir + "/.tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        var attempt = 0
        let fd: FileDescriptor
        while true {
            try FileSystem.mkdirs(dir, mode: 0o700)
            do {
                fd = try FileSystem.createExclusive(tmp, mode: 0o600)
                break
            } catch let e as SystemError where e.errno == ENOENT && attempt < 3 {
                attempt += 1 // a delete removed the emptied directory meanwhile
            }
        }
        do {
            try fill(fd)
            try fd.fsync()
            fd.close()
            try FileSystem.rename(tmp, to: path)
        } catch {
            fd.close()
            try? FileSystem.remove(tmp)
            throw error
        }
        try FileSystem.fsyncDirectory(dir)
    }

    @discardableResult
    public func put(_ key: String, _ bytes: [UInt8], condition: PutCondition) throws -> String {
        let p = try path(key)
        let write = {
            try self.replace(p) { fd in
                try bytes.withUnsafeBytes { if $0.count > 0 { try fd.pwrite($0.baseAddress!, count: $0.count, offset: 0) } }
            }
        }
        let etag = Self.quoted(bytes.withUnsafeBytes { Self.md5($0) })
        guard condition != .none else {
            try write()
            return etag
        }
        // The check and the rename under one lock: two conditional writers cannot both win.
        try lock.withLock { _ in
            let existing = try? FileSystem.readFile(p)
            switch condition {
            case .none: break
            case .ifAbsent:
                if existing != nil { throw ReplicaError("\(key): precondition failed (exists)", kind: .recoverable, code: .preconditionFailed) }
            case .ifMatch(let tag):
                guard let existing, existing.withUnsafeBytes({ Self.md5($0) }) == ObjectDigest.plainETag(tag) else {
                    throw ReplicaError("\(key): precondition failed (changed)", kind: .recoverable, code: .preconditionFailed)
                }
            }
            try write()
        }
        return etag
    }

    /// Copies `source` in pieces of `partSize` (never all in memory); the ETag is the one S3
    /// gives a multipart upload of those parts (the plain MD5 when one part).
    @discardableResult
    public func upload(_ key: String, from source: SourceFile, partSize: Int, progress: ((Int64) -> Void)?) throws -> String {
        let p = try path(key)
        let size = try source.size()
        let piece = max(1, partSize)
        var whole = Insecure.MD5()
        var partDigests: [UInt8] = []
        var parts = 0
        try replace(p) { fd in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: piece, alignment: 4096)
            defer { buffer.deallocate() }
            var at: Int64 = 0
            while at < size {
                let n = try source.read(into: buffer.baseAddress!, count: Int(min(Int64(piece), size - at)), offset: at)
                guard n > 0 else { throw ReplicaError("\(source.localPath) shrank while uploading it as \(key)", kind: .recoverable) }
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                try fd.pwrite(bytes.baseAddress!, count: n, offset: at)
                whole.update(bufferPointer: bytes)
                partDigests += Array(Insecure.MD5.hash(data: bytes))
                parts += 1
                at += Int64(n)
                progress?(Int64(n))
            }
        }
        if parts <= 1 { return Self.quoted(ObjectDigest.hex(whole.finalize())) }
        return Self.quoted(ObjectDigest.hex(Insecure.MD5.hash(data: partDigests)) + "-\(parts)")
    }

    public func get(_ key: String, range: Range<Int64>?) throws -> [UInt8]? {
        let p = try path(key)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(p, O_RDONLY)
        } catch let e as SystemError where e.errno == ENOENT || e.errno == ENOTDIR {
            return nil
        }
        defer { fd.close() }
        guard let range else { return try fd.readAll() }
        let size = try fd.size()
        let lo = min(max(0, range.lowerBound), size), hi = min(max(lo, range.upperBound), size)
        var bytes = [UInt8](repeating: 0, count: Int(hi - lo))
        var done = 0
        try bytes.withUnsafeMutableBytes { b in
            while done < b.count {
                let n = try fd.pread(into: b.baseAddress! + done, count: b.count - done, offset: lo + Int64(done))
                if n == 0 { break }
                done += n
            }
        }
        return Array(bytes.prefix(done))
    }

    /// Size and the MD5 ETag (the file is read to compute it: heads are rare in the store).
    public func head(_ key: String) throws -> ObjectInfo? {
        guard let bytes = try get(key, range: nil) else { return nil }
        return ObjectInfo(key: key, size: Int64(bytes.count), etag: bytes.withUnsafeBytes { Self.md5($0) })
    }

    /// Every key starting with `prefix`, in key order (the walk starts at the prefix's
    /// deepest directory). Listed ETags are empty: nothing in the store reads them.
    public func list(prefix: String) throws -> [ObjectInfo] {
        let base = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
        var out: [ObjectInfo] = []
        func walk(_ dir: String, _ keyPrefix: String) throws {
            let names: [String]
            do {
                names = try FileSystem.list(dir)
            } catch let e as SystemError where e.errno == ENOENT || e.errno == ENOTDIR {
                return
            }
            for name in names where !name.hasPrefix(".") {
                let p = dir + "/" + name, key = keyPrefix + name
                guard key.hasPrefix(prefix) || prefix.hasPrefix(key + "/") else { continue }
                guard let st = try? FileSystem.lstat(p) else { continue }
                if st.st_mode & S_IFMT == S_IFDIR {
                    try walk(p, key + "/")
                } else if st.st_mode & S_IFMT == S_IFREG, key.hasPrefix(prefix) {
                    out.append(ObjectInfo(key: key, size: Int64(st.st_size), etag: ""))
                }
            }
        }
        try walk(base.isEmpty ? root : root + "/" + base, base.isEmpty ? "" : base + "/")
        return out.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) throws {
        let p = try path(key)
        do {
            try FileSystem.remove(p)
        } catch let e as SystemError where e.errno == ENOENT || e.errno == ENOTDIR {
            return
        }
        // Empty directories left behind go (best effort; a racing put recreates its own).
        var dir = String(p[..<p.lastIndex(of: "/")!])
        while dir.count > root.count, rmdir(dir) == 0 {
            dir = String(dir[..<dir.lastIndex(of: "/")!])
        }
    }
}
