import CLinux
import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// Replays a chain of change logs onto an image. Everything is verified first (checksums,
/// one image and chain, no gaps in sequence or LSN, only the last log unsealed, no torn
/// tail); only then is the target opened for writing.
public struct LogApplier {
    public struct Result: Sendable {
        public var logs: Int
        public var records: UInt64
        public var dataBytes: UInt64
    }

    public let scans: [LogScan]

    /// Verifies `paths` as one chain, in sequence order whatever order they were given in.
    public init(paths: [String]) throws {
        guard !paths.isEmpty else { throw ReplicaError("no change logs given") }
        try self.init(scans: try paths.map { try LogScanner.scan($0) })
    }

    /// Verifies logs already scanned as one chain.
    public init(scans unsorted: [LogScan]) throws {
        guard !unsorted.isEmpty else { throw ReplicaError("no change logs given") }
        var scans: [LogScan] = []
        for scan in unsorted {
            let path = scan.path
            switch scan.tail {
            case .clean: break
            case .torn(let offset, let reason):
                throw ReplicaError("\(path): torn tail at byte \(offset) (\(reason)); mount the disks-dir once to repair it, or leave this log out")
            case .corrupt(let offset, let reason):
                throw ReplicaError("\(path): corrupt record at byte \(offset) (\(reason))")
            }
            scans.append(scan)
        }
        scans.sort { $0.header.sequence < $1.header.sequence }
        let first = scans[0].header
        for (i, scan) in scans.enumerated() {
            let h = scan.header
            if h.imageName != first.imageName || h.chainID != first.chainID {
                throw ReplicaError("\(scan.path): foreign log: it belongs to image \(Self.quoted(h.imageName)) chain \(h.chainHex), the others to \(Self.quoted(first.imageName)) chain \(first.chainHex)")
            }
            guard i > 0 else { continue }
            let prev = scans[i - 1]
            if h.sequence == prev.header.sequence {
                throw ReplicaError("\(scan.path): sequence \(h.sequence) given twice (also \(prev.path))")
            }
            if h.sequence != prev.header.sequence + 1 {
                throw ReplicaError("gap in log sequence: \(prev.header.sequence) is followed by \(h.sequence); missing \(LogName.make(image: first.imageName, sequence: prev.header.sequence + 1))")
            }
            if !prev.isSealed {
                throw ReplicaError("\(prev.path): not sealed but followed by log \(h.sequence)")
            }
            if h.firstLSN != prev.nextLSN {
                throw ReplicaError("\(scan.path): starts at LSN \(h.firstLSN) but the previous log ends before LSN \(prev.nextLSN)")
            }
        }
        self.scans = scans
    }

    /// An image name from a header for an error message: a header may carry any UTF-8 name,
    /// newlines included, and an error stays one line (found by fuzzing, docs/fuzzing.md).
    static func quoted(_ name: String) -> String {
        name.unicodeScalars.contains { $0.properties.generalCategory == .control } ? String(reflecting: name) : "'\(name)'"
    }

    /// Applies every verified record to `imagePath` and makes it durable.
    @discardableResult
    public func apply(to imagePath: String) throws -> Result {
        let target = try FileDescriptor.open(imagePath, O_RDWR)
        defer { target.close() }
        let st = try target.stat()
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ReplicaError("\(imagePath): not a regular file") }
        var result = Result(logs: 0, records: 0, dataBytes: 0)
        for scan in scans {
            _ = try LogScanner.scan(scan.path) { header, data in
                try Self.applyRecord(header, data, to: target)
                if header.type != .seal { result.records += 1 }
                if header.type == .write { result.dataBytes += header.extent }
            }
            result.logs += 1
        }
        try target.fsync()
        return result
    }

    /// Applies one record; shared by `log apply` and, later, the target store.
    public static func applyRecord(_ header: RecordHeader, _ data: UnsafeRawBufferPointer, to target: FileDescriptor) throws {
        switch header.type {
        case .write:
            try target.pwrite(data.baseAddress!, count: data.count, offset: Int64(header.offset))
        case .setSize:
            try target.truncate(to: Int64(header.offset))
        case .zero:
            try zeroRange(target, offset: Int64(header.offset), length: Int64(header.extent))
        case .marker, .seal:
            break
        }
    }

    /// Makes a range read as zeros without changing the size: punch a hole, or write zeros where
    /// the filesystem cannot punch.
    static func zeroRange(_ fd: FileDescriptor, offset: Int64, length: Int64) throws {
        let size = try fd.size()
        let end = min(offset + length, size)
        guard end > offset else { return }
        do {
            try fd.fallocate(mode: RFS_FALLOC_PUNCH_HOLE | RFS_FALLOC_KEEP_SIZE, offset: offset, length: end - offset)
        } catch let e as SystemError where e.errno == EOPNOTSUPP {
            let chunk = 1 << 20
            let zeros = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
            defer { zeros.deallocate() }
            memset(zeros, 0, chunk)
            var at = offset
            while at < end {
                let n = Int(min(Int64(chunk), end - at))
                try fd.pwrite(zeros, count: n, offset: at)
                at += Int64(n)
            }
        }
    }
}
