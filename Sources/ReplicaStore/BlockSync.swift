import CLinux
import Crypto
import Dispatch
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Fixed-block checksum comparison and repair of two files (resync, failback, verify).
///
/// Both files are cut into `blockSize` blocks; each side computes a SHA-256 per block, and only
/// blocks whose digests differ are sent. The two sides are read at once, each by its own thread,
/// in large windows, because a resync is bound by reading both disks in full: with the reads
/// overlapped the cost is about one disk's read, not two. Each side hashes its own bytes, as a
/// remote side would, so the same code serves a local store and one across a network (where
/// `checksums(of:)` is what the far side sends instead of its data).
public struct BlockSync: Sendable {
    public struct Report: Codable, Sendable {
        public var blockSize: Int
        /// Blocks of the source.
        public var blocks: Int
        /// Blocks whose checksums differed (and were written).
        public var differingBlocks: Int
        /// Bytes read and hashed on both sides together.
        public var bytesCompared: Int64
        /// Bytes written to the target (the differing blocks).
        public var bytesSent: Int64
        public var seconds: Double
        public var sourceSize: Int64
    }

    public struct Progress: Sendable {
        public var bytesDone: Int64
        public var bytesTotal: Int64
        public var bytesSent: Int64

        public init(bytesDone: Int64, bytesTotal: Int64, bytesSent: Int64) {
            self.bytesDone = bytesDone
            self.bytesTotal = bytesTotal
            self.bytesSent = bytesSent
        }
    }

    public let blockSize: Int

    public init(blockSize: Int = 1 << 20) {
        precondition(blockSize > 0 && blockSize <= 64 << 20, "block size must be between 1 byte and 64 MiB")
        self.blockSize = blockSize
    }

    /// Bytes each side reads per step: a whole number of blocks, at least 32 MiB.
    var windowSize: Int { max(1, (32 << 20) / blockSize) * blockSize }

    /// Differing byte ranges (block-aligned, merged) between a and b, comparing SHA-256 per block;
    /// a size difference counts as differing tail.
    public func diff(_ a: String, _ b: String, progress: ((Progress) -> Void)? = nil) throws -> [Range<Int64>] {
        let fa = try FileDescriptor.open(a, O_RDONLY)
        defer { fa.close() }
        let fb = try FileDescriptor.open(b, O_RDONLY)
        defer { fb.close() }
        return try diff(fa, try fa.size(), fb, try fb.size(), progress: progress)
    }

    /// Differing ranges between a file and a disk as of a recovery point (or any two readers).
    public func diff(_ source: String, _ view: PointView, progress: ((Progress) -> Void)? = nil) throws -> [Range<Int64>] {
        let fa = try FileDescriptor.open(source, O_RDONLY)
        defer { fa.close() }
        return try diff(fa, try fa.size(), view, view.size, progress: progress)
    }

    func diff(_ fa: BlockReader, _ sizeA: Int64, _ fb: BlockReader, _ sizeB: Int64,
              progress: ((Progress) -> Void)? = nil) throws -> [Range<Int64>] {
        let total = max(sizeA, sizeB)
        var ranges: [Range<Int64>] = []
        _ = try walk(fa, sizeA, fb, sizeB, length: total, progress: progress) { window in
            for block in window.differing {
                let start = window.offset + Int64(block * blockSize)
                let end = min(start + Int64(blockSize), total)
                if let last = ranges.last, last.upperBound == start {
                    ranges[ranges.count - 1] = last.lowerBound..<end
                } else {
                    ranges.append(start..<end)
                }
            }
            return 0
        }
        return ranges
    }

    /// Makes `target` equal `source` byte for byte (creating it if missing), writing only blocks
    /// whose checksums differ, then sets its size and fsyncs it. The target is first set to the
    /// source's size, so a grown or new target keeps holes wherever the source reads as zeros.
    public func sync(from source: String, to target: String, progress: ((Progress) -> Void)? = nil) throws -> Report {
        let started = Clock.nowNanos()
        let src = try FileDescriptor.open(source, O_RDONLY)
        defer { src.close() }
        let dst = try FileDescriptor.open(target, O_RDWR | O_CREAT, mode: 0o600)
        defer { dst.close() }
        let size = try src.size()
        if try dst.size() != size { try dst.truncate(to: size) }
        let result = try walk(src, size, dst, size, length: size, progress: progress) { window in
            var sent: Int64 = 0
            try forEachRun(window.differing) { first, count in
                let at = first * blockSize
                let n = min(count * blockSize, window.sourceCount - at)
                try dst.pwrite(window.source + at, count: n, offset: window.offset + Int64(at))
                sent += Int64(n)
            }
            return sent
        }
        try dst.fsync()
        return Report(blockSize: blockSize, blocks: blockCount(size), differingBlocks: result.differing,
                      bytesCompared: result.compared, bytesSent: result.sent,
                      seconds: Double(Clock.nowNanos() - started) / 1e9, sourceSize: size)
    }

    /// Per-block SHA-256 digests of one file (what a remote side would send instead of data).
    public func checksums(of path: String) throws -> [[UInt8]] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        let size = try fd.size()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: windowSize, alignment: 4096)
        defer { buffer.deallocate() }
        var digests: [[UInt8]] = []
        digests.reserveCapacity(blockCount(size))
        var at: Int64 = 0
        while at < size {
            let n = try fd.pread(into: buffer, count: Int(min(Int64(windowSize), size - at)), offset: at)
            guard n > 0 else { break }
            for d in hashBlocks(buffer, count: n) { digests.append(Array(d)) }
            at += Int64(n)
        }
        return digests
    }

    // MARK: the engine

    func blockCount(_ size: Int64) -> Int { Int((size + Int64(blockSize) - 1) / Int64(blockSize)) }

    /// One window of both files, handed to the caller with the blocks that differ in it.
    public struct Window {
        /// File offset of the window's first byte.
        public var offset: Int64
        /// Indexes (within the window) of differing blocks, ascending.
        var differing: [Int]
        /// The source's (first file's) bytes of the window and how many it has there.
        public var source: UnsafeMutableRawPointer
        var sourceCount: Int
        /// The target's (second file's) bytes of the window and how many it has there.
        public var target: UnsafeMutableRawPointer
        var targetCount: Int
    }

    /// Reads `length` bytes of both files window by window, each side on its own thread, hashes
    /// every block on each side and hands each window's differing blocks to `body`, which returns
    /// the bytes it sent. Returns the totals.
    func walk(_ a: BlockReader, _ sizeA: Int64, _ b: BlockReader, _ sizeB: Int64, length: Int64,
              progress: ((Progress) -> Void)?, body: (Window) throws -> Int64) throws -> (differing: Int, compared: Int64, sent: Int64) {
        for side in [a, b] { if let fd = side.file { _ = posix_fadvise(fd.rawValue, 0, 0, POSIX_FADV_SEQUENTIAL) } }
        let window = windowSize
        let bufA = UnsafeMutableRawPointer.allocate(byteCount: window, alignment: 4096)
        defer { bufA.deallocate() }
        let bufB = UnsafeMutableRawPointer.allocate(byteCount: window, alignment: 4096)
        defer { bufB.deallocate() }
        var differing = 0
        var compared: Int64 = 0
        var sent: Int64 = 0
        var offset: Int64 = 0
        // Blocks in holes read as zeros: their digest is known without hashing them.
        let zeroDigest = SHA256.hash(data: [UInt8](repeating: 0, count: blockSize))
        let chunk = max(1, (1 << 20) / blockSize) * blockSize
        while offset < length {
            let span = Int(min(Int64(window), length - offset))
            let sides = SideResults()
            let at = offset
            // Each side reads into its own buffer and both are done when concurrentPerform
            // returns, so handing the readers and buffers to the two iterations is safe.
            nonisolated(unsafe) let a = a, b = b, bufA = bufA, bufB = bufB
            nonisolated(unsafe) let zeroDigest = zeroDigest
            DispatchQueue.concurrentPerform(iterations: 2) { side in
                let (reader, size, buf) = side == 0 ? (a, sizeA, bufA) : (b, sizeB, bufB)
                do {
                    // Start reading the next window now, so the disk works while this one is hashed.
                    let next = at + Int64(span)
                    if next < size, let fd = reader.file { _ = posix_fadvise(fd.rawValue, off_t(next), off_t(window), POSIX_FADV_WILLNEED) }
                    let want = Int(max(0, min(Int64(span), size - at)))
                    let data = reader.file.flatMap { dataBlocks($0, from: at, count: want) }
                    // Read a chunk and hash it while it is still in the CPU's cache.
                    var got = 0
                    var digests: [SHA256.Digest] = []
                    while got < want {
                        let n = try reader.readBlock(into: buf + got, count: min(chunk, want - got), offset: at + Int64(got))
                        guard n > 0 else { break }
                        let first = got / blockSize
                        let flags = data.map { Array($0[first..<min($0.count, first + (n + blockSize - 1) / blockSize)]) }
                        digests += hashBlocks(buf + got, count: n, data: flags, zero: zeroDigest)
                        got += n
                    }
                    sides.set(side, count: got, digests: digests)
                } catch {
                    sides.fail(side, error)
                }
            }
            if let error = sides.error { throw error }
            let blocks = (span + blockSize - 1) / blockSize
            var diff: [Int] = []
            for i in 0..<blocks {
                let da = i < sides.digests[0].count ? sides.digests[0][i] : nil
                let db = i < sides.digests[1].count ? sides.digests[1][i] : nil
                if da == nil || da != db { diff.append(i) }
            }
            compared += Int64(sides.counts[0] + sides.counts[1])
            differing += diff.count
            if !diff.isEmpty {
                sent += try body(Window(offset: offset, differing: diff, source: bufA, sourceCount: sides.counts[0],
                                        target: bufB, targetCount: sides.counts[1]))
            }
            offset += Int64(span)
            progress?(Progress(bytesDone: offset, bytesTotal: length, bytesSent: sent))
        }
        return (differing, compared, sent)
    }

    /// Which blocks of `count` bytes at `offset` hold data (nil: all of them), from SEEK_DATA
    /// and SEEK_HOLE; a block wholly inside a hole reads as zeros.
    func dataBlocks(_ fd: FileDescriptor, from offset: Int64, count: Int) -> [Bool]? {
        guard count > 0 else { return nil }
        let end = offset + Int64(count)
        var flags = [Bool](repeating: false, count: (count + blockSize - 1) / blockSize)
        var pos = offset
        while pos < end {
            let start = lseek(fd.rawValue, off_t(pos), RFS_SEEK_DATA)
            if start < 0 { return errno == ENXIO ? flags : nil }   // ENXIO: only a hole follows
            guard Int64(start) < end else { break }
            let holeAt = lseek(fd.rawValue, off_t(start), RFS_SEEK_HOLE)
            let stop = holeAt < 0 ? end : min(end, Int64(holeAt))
            guard stop > Int64(start) else { return nil }
            for b in Int((Int64(start) - offset) / Int64(blockSize))...Int((stop - 1 - offset) / Int64(blockSize)) { flags[b] = true }
            pos = stop
        }
        return flags
    }

    /// SHA-256 of each block of the first `count` bytes (the last block may be short); blocks
    /// `data` marks as holes get the all-zero block's digest without being hashed.
    func hashBlocks(_ buffer: UnsafeMutableRawPointer, count: Int, data: [Bool]? = nil,
                    zero: SHA256.Digest? = nil) -> [SHA256.Digest] {
        var digests: [SHA256.Digest] = []
        digests.reserveCapacity((count + blockSize - 1) / blockSize)
        var at = 0
        while at < count {
            let n = min(blockSize, count - at)
            if let data, let zero, n == blockSize, !data[at / blockSize] {
                digests.append(zero)
                at += n
                continue
            }
            var hasher = SHA256()
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer + at, count: n))
            digests.append(hasher.finalize())
            at += n
        }
        return digests
    }

    /// Calls `body(first, count)` for each run of consecutive indexes.
    func forEachRun(_ indexes: [Int], _ body: (Int, Int) throws -> Void) rethrows {
        var i = 0
        while i < indexes.count {
            var j = i + 1
            while j < indexes.count && indexes[j] == indexes[j - 1] + 1 { j += 1 }
            try body(indexes[i], j - i)
            i = j
        }
    }
}

/// What the two reader threads of one window hand back (each writes only its own slot).
// @unchecked: SHA256.Digest is not Sendable; both sides write under `lock`, read after they end.
private final class SideResults: @unchecked Sendable {
    var counts = [0, 0]
    var digests: [[SHA256.Digest]] = [[], []]
    private var errors: [Error?] = [nil, nil]
    private let lock = Lock()

    public func set(_ side: Int, count: Int, digests d: [SHA256.Digest]) {
        lock.withLock { counts[side] = count; digests[side] = d }
    }

    func fail(_ side: Int, _ e: Error) { lock.withLock { errors[side] = e } }

    public var error: Error? { lock.withLock { errors[0] ?? errors[1] } }
}

/// One side of a comparison: a file, or a disk as of a recovery point (`PointView`).
protocol BlockReader {
    /// Reads up to `count` bytes at `offset`; fewer only at the end of a file.
    func readBlock(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int
    /// The file behind the side, for read-ahead hints and hole detection (nil: none).
    var file: FileDescriptor? { get }
}

extension FileDescriptor: BlockReader {
    func readBlock(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        try pread(into: buffer, count: count, offset: offset)
    }
    var file: FileDescriptor? { self }
}

extension PointView: BlockReader {
    func readBlock(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws -> Int {
        let n = Int(max(0, min(Int64(count), size - offset)))
        try read(into: buffer, count: n, offset: offset)
        return n
    }
    var file: FileDescriptor? { nil }
}
