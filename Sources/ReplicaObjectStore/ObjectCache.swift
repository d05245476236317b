import Foundation
import ReplicaSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The local cache of what point readers fetched from the bucket: base chunks, log segments
/// and log indexes, each named by the SHA-256 of its bytes (so an entry never goes stale and
/// is shared by every point and VM that holds the same bytes). Two tiers: a bounded directory
/// on disk (least recently used entries go first) and a few entries in memory, each checked
/// against its SHA-256 when it enters memory, so a damaged object or cache file is never used.
final class ObjectCache: Sendable {
    let directory: String
    let diskLimit: Int64
    let memoryLimit: Int

    private struct State {
        var tick: UInt64 = 0
        var memory: [String: (bytes: [UInt8], used: UInt64)] = [:]
        var memoryBytes = 0
        var disk: [String: (size: Int64, used: UInt64)] = [:]
        var diskBytes: Int64 = 0
    }
    private let state = Mutex(State())
    /// Fetches under way, by SHA-256: a reader wanting a chunk that read-ahead is fetching
    /// waits for that GET instead of sending its own.
    private let flights = Mutex<[String: DispatchGroup]>([:])

    /// A cache in `directory` (created if missing) of at most `diskLimit` bytes on disk and
    /// `memoryLimit` in memory.
    init(directory: String, diskLimit: Int64, memoryLimit: Int = 64 << 20) throws {
        self.directory = directory
        self.diskLimit = diskLimit
        self.memoryLimit = memoryLimit
        try FileSystem.mkdirs(directory, mode: 0o700)
        // Entries from an earlier run count against the bound, oldest first.
        var found: [(String, Int64, Int)] = []
        for name in try FileSystem.list(directory) {
            let path = directory + "/" + name
            guard name.count == 64, let st = try? FileSystem.stat(path) else {
                if name.hasPrefix(".tmp-") { try? FileSystem.remove(path) }
                continue
            }
            found.append((name, Int64(st.st_size), st.st_mtim.tv_sec))
        }
        found.sort { $0.2 < $1.2 }
        state.withLock { s in
            for (name, size, _) in found {
                s.tick += 1
                s.disk[name] = (size, s.tick)
                s.diskBytes += size
            }
        }
    }

    /// The bytes whose SHA-256 is `sha256`: from memory, the cache directory, or `load` (a
    /// GET), checked before they are used or kept. A mismatch is an error naming `what`.
    func bytes(sha256: String, what: String, load: () throws -> [UInt8]?) throws -> [UInt8] {
        if let hit = inMemory(sha256) { return hit }
        // One fetch per entry at a time: a second caller waits for the first and takes its bytes
        // (or, when that fetch failed, fetches on its own below).
        let (flight, leads) = flights.withLock { f -> (DispatchGroup, Bool) in
            if let g = f[sha256] { return (g, false) }
            let g = DispatchGroup()
            g.enter()
            f[sha256] = g
            return (g, true)
        }
        if leads {
            defer {
                flights.withLock { _ = $0.removeValue(forKey: sha256) }
                flight.leave()
            }
            return try fetch(sha256: sha256, what: what, load: load)
        }
        flight.wait()
        if let hit = inMemory(sha256) { return hit }
        return try fetch(sha256: sha256, what: what, load: load)
    }

    private func inMemory(_ sha256: String) -> [UInt8]? {
        state.withLock { s -> [UInt8]? in
            guard let e = s.memory[sha256] else { return nil }
            s.tick += 1
            s.memory[sha256]!.used = s.tick
            return e.bytes
        }
    }

    /// The entry from the cache directory, else from `load`, checked and kept.
    private func fetch(sha256: String, what: String, load: () throws -> [UInt8]?) throws -> [UInt8] {
        let path = directory + "/" + sha256
        if state.withLock({ $0.disk[sha256] != nil }), let local = try? FileSystem.readFile(path) {
            if ObjectDigest.sha256(local) == sha256 {
                remember(sha256, local, onDisk: false)
                return local
            }
            forget(sha256) // a damaged cache file: fetch again
        }
        guard let fetched = try load() else {
            throw ReplicaError("\(what) is missing from the bucket", kind: .nonRecoverable, code: .noSuchPoint)
        }
        guard ObjectDigest.sha256(fetched) == sha256 else {
            throw ReplicaError("\(what): corrupt or truncated object (\(fetched.count) bytes, SHA-256 differs from the catalog's): not used",
                               kind: .nonRecoverable)
        }
        remember(sha256, fetched, onDisk: true)
        return fetched
    }

    /// Whether the entry is in memory or on disk (read-ahead skips those).
    func contains(_ sha256: String) -> Bool { state.withLock { $0.memory[sha256] != nil || $0.disk[sha256] != nil } }

    /// Whether the entry is cached or being fetched now (read-ahead skips those).
    func hasOrFetches(_ sha256: String) -> Bool { contains(sha256) || flights.withLock { $0[sha256] != nil } }

    private func remember(_ sha256: String, _ bytes: [UInt8], onDisk: Bool) {
        if onDisk, Int64(bytes.count) <= diskLimit {
            let tmp = directory + "/.tmp-" + sha256 + "-\(UInt64.random(in: 0...UInt64.max))"
            let stored = (try? bytes.withUnsafeBytes { b -> Bool in
                let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
                defer { fd.close() }
                if b.count > 0 { try fd.pwrite(b.baseAddress!, count: b.count, offset: 0) }
                return rename(tmp, directory + "/" + sha256) == 0
            }) ?? false
            if !stored { try? FileSystem.remove(tmp) }
            if stored {
                let evict = state.withLock { s -> [String] in
                    s.tick += 1
                    if let old = s.disk[sha256] { s.diskBytes -= old.size }
                    s.disk[sha256] = (Int64(bytes.count), s.tick)
                    s.diskBytes += Int64(bytes.count)
                    var out: [String] = []
                    if s.diskBytes > diskLimit {
                        for (name, e) in s.disk.sorted(by: { $0.value.used < $1.value.used }) where s.diskBytes > diskLimit && name != sha256 {
                            s.disk[name] = nil
                            s.diskBytes -= e.size
                            out.append(name)
                        }
                    }
                    return out
                }
                for name in evict { try? FileSystem.remove(directory + "/" + name) }
            }
        }
        state.withLock { s in
            s.tick += 1
            if s.memory[sha256] == nil { s.memoryBytes += bytes.count }
            s.memory[sha256] = (bytes, s.tick)
            if s.memoryBytes > memoryLimit {
                for (name, e) in s.memory.sorted(by: { $0.value.used < $1.value.used }) where s.memoryBytes > memoryLimit && name != sha256 {
                    s.memory[name] = nil
                    s.memoryBytes -= e.bytes.count
                }
            }
        }
    }

    private func forget(_ sha256: String) {
        state.withLock { s in
            if let e = s.disk.removeValue(forKey: sha256) { s.diskBytes -= e.size }
        }
        try? FileSystem.remove(directory + "/" + sha256)
    }

    /// Bytes on disk now (tests check the bound).
    var diskBytes: Int64 { state.withLock { $0.diskBytes } }
}
