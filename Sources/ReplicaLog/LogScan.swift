import ReplicaSystem
#if canImport(Glibc)
import Glibc
#endif

/// The result of reading a change log from start to end, verifying every checksum.
public struct LogScan: Sendable {
    /// How the log ends.
    public enum Tail: Equatable, Sendable {
        /// Every byte belongs to a valid record.
        case clean
        /// The bytes from `offset` on are an incomplete or unverifiable last write (a crash mid-append);
        /// nothing valid follows, so cutting there loses nothing that was complete.
        case torn(offset: Int64, reason: String)
        /// A bad record at `offset` with valid data after it, or data after the seal: damage, not a crash.
        case corrupt(offset: Int64, reason: String)
    }

    public let path: String
    public let header: LogHeader
    public let fileSize: Int64
    /// End of the last valid record.
    public let validEnd: Int64
    public let recordCount: UInt64
    public let dataBytes: UInt64
    /// LSN the next record would carry.
    public let nextLSN: UInt64
    public let seal: Seal?
    public let markers: [(lsn: UInt64, marker: Marker)]
    public let ranges: RangeSet
    public let tail: Tail
    /// Sizes set by set-size records, in order.
    public let sizeChanges: [UInt64]
    /// The end of the furthest write after the last set-size record (or in the whole log).
    public let writeEndAfterLastSize: UInt64

    public var isSealed: Bool { seal != nil }

    /// The image's size after this log is applied to an image of `size` bytes.
    public func sizeAfter(_ size: Int64) -> Int64 {
        max(sizeChanges.last.map { Int64($0) } ?? size, Int64(writeEndAfterLastSize))
    }
    public var lastLSN: UInt64 { nextLSN - 1 }
}

/// Reads HRL change logs. The whole file is mapped read-only and checked record by record.
public enum LogScanner {
    /// Scans the log at `path`. `visit` sees each valid record in order (its data is only valid
    /// during the call); visiting stops at the first invalid byte, which `tail` then describes.
    /// Throws when the file cannot be read or its header is not a valid HRL header.
    public static func scan(_ path: String,
                            visit: ((RecordHeader, UnsafeRawBufferPointer) throws -> Void)? = nil) throws -> LogScan {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        defer { fd.close() }
        let st = try fd.stat()
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ReplicaError("\(path): not a regular file") }
        let fileSize = Int64(st.st_size)
        guard fileSize >= LogHeader.size else {
            throw ReplicaError("\(path): not an HRL change log (file shorter than its 512-byte header)")
        }
        guard let map = mmap(nil, Int(fileSize), PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            // Files that cannot be mapped (a log read through the FUSE mount, whose files are
            // opened with direct I/O or without mmap support: ENODEV) are read with pread.
            guard errno == ENODEV || errno == EINVAL || errno == EACCES else { throw SystemError.current("mmap", path) }
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(fileSize), alignment: 16)
            defer { copy.deallocate() }
            let n = try fd.pread(into: copy.baseAddress!, count: Int(fileSize), offset: 0)
            return try scan(UnsafeRawBufferPointer(rebasing: copy[0..<n]), path: path, visit: visit)
        }
        // Read front to back: logs not in the page cache (a store's redo logs, written with direct
        // I/O, when merged or exported) are then read ahead in large requests, not page by page.
        _ = madvise(map, Int(fileSize), MADV_SEQUENTIAL)
        _ = madvise(map, Int(fileSize), MADV_WILLNEED)
        defer { munmap(map, Int(fileSize)) }
        _ = madvise(map, Int(fileSize), MADV_SEQUENTIAL)
        let all = UnsafeRawBufferPointer(start: map, count: Int(fileSize))
        return try scan(all, path: path, visit: visit)
    }

    /// Scans a log held in memory (used by `scan(_:)` and by tests that mutate logs).
    /// `verifyWriteData: false` leaves the data checksum of write records to the caller (a
    /// failover's redo overlay checks each record's data when it is first read, so opening a
    /// point does not read every changed byte); headers, LSNs, markers and the seal are checked.
    public static func scan(_ all: UnsafeRawBufferPointer, path: String, verifyWriteData: Bool = true,
                            visit: ((RecordHeader, UnsafeRawBufferPointer) throws -> Void)? = nil) throws -> LogScan {
        let header = try LogHeader.decode(all, path: path)
        let size = all.count
        var pos = LogHeader.size
        var lsn = header.firstLSN
        var count: UInt64 = 0
        var dataBytes: UInt64 = 0
        var seal: Seal?
        var markers: [(UInt64, Marker)] = []
        var ranges = RangeSet()
        var sizes: [UInt64] = []
        var writeEnd: UInt64 = 0
        var tail = LogScan.Tail.clean

        func damaged(_ at: Int, _ reason: String, skip: Int) -> LogScan.Tail {
            // A tear leaves nothing valid behind it; damage does.
            validRecordFollows(all, from: at + skip)
                ? .corrupt(offset: Int64(at), reason: reason)
                : .torn(offset: Int64(at), reason: reason)
        }

        while pos < size {
            if seal != nil {
                tail = .corrupt(offset: Int64(pos), reason: "data after the seal record")
                break
            }
            if size - pos < RecordHeader.size {
                tail = .torn(offset: Int64(pos), reason: "incomplete record header")
                break
            }
            let rh: RecordHeader
            do {
                rh = try RecordHeader.decode(UnsafeRawBufferPointer(rebasing: all[pos..<(pos + RecordHeader.size)]))
            } catch {
                tail = damaged(pos, "record header fails its checksum (\(error))", skip: 1)
                break
            }
            let dataStart = pos + RecordHeader.size
            let dataEnd = dataStart + Int(rh.dataLength)
            if dataEnd > size {
                tail = .torn(offset: Int64(pos), reason: "record data cut short")
                break
            }
            let data = UnsafeRawBufferPointer(rebasing: all[dataStart..<dataEnd])
            if (verifyWriteData || rh.type != .write) && Checksum.crc32c(data) != rh.dataCRC {
                tail = damaged(pos, "record data fails its checksum", skip: dataEnd - pos)
                break
            }
            if rh.lsn != lsn {
                tail = .corrupt(offset: Int64(pos), reason: "record LSN \(rh.lsn) where \(lsn) was expected")
                break
            }
            if let problem = fieldProblem(rh) {
                // Checksums verify, so this is no tear: a crafted or miswritten record.
                tail = .corrupt(offset: Int64(pos), reason: problem)
                break
            }
            switch rh.type {
            case .write:
                ranges.insert(rh.offset..<(rh.offset + rh.extent))
                dataBytes += rh.extent
                // An empty write changes nothing, not even the size: a pwrite of no bytes does
                // not extend the image (found by fuzzing, docs/fuzzing.md).
                if rh.extent > 0 { writeEnd = max(writeEnd, rh.offset + rh.extent) }
            case .zero:
                ranges.insert(rh.offset..<(rh.offset + rh.extent))
            case .setSize:
                sizes.append(rh.offset)
                writeEnd = 0
            case .marker:
                guard let m = Marker.decode(data), m.cutID <= LogLimits.maxCounter else {
                    tail = .corrupt(offset: Int64(pos), reason: "unreadable marker")
                    break
                }
                markers.append((rh.lsn, m))
            case .seal:
                guard let s = Seal.decode(data), s.recordCount == count, s.cutID <= LogLimits.maxCounter else {
                    tail = .corrupt(offset: Int64(pos), reason: "seal record does not match the log")
                    break
                }
                seal = s
            }
            if tail != .clean { break }
            try visit?(rh, data)
            if rh.type != .seal { count += 1 }
            lsn += 1
            pos = dataEnd
        }
        ranges.normalize()
        let validEnd: Int64
        switch tail {
        case .clean: validEnd = Int64(size)
        case .torn(let offset, _), .corrupt(let offset, _): validEnd = offset
        }
        return LogScan(path: path, header: header, fileSize: Int64(size), validEnd: validEnd, recordCount: count,
                       dataBytes: dataBytes, nextLSN: lsn, seal: seal, markers: markers, ranges: ranges,
                       tail: tail, sizeChanges: sizes, writeEndAfterLastSize: writeEnd)
    }

    /// Why a record's numbers are out of range (see `LogLimits`), or nil when they are not.
    static func fieldProblem(_ rh: RecordHeader) -> String? {
        if rh.lsn > LogLimits.maxCounter { return "record LSN \(rh.lsn) beyond \(LogLimits.maxCounter)" }
        switch rh.type {
        case .write, .zero:
            return LogLimits.rangeProblem(offset: rh.offset, length: rh.extent).map { "\(rh.type) record: \($0)" }
        case .setSize:
            return rh.offset > LogLimits.maxImageBytes ? "set-size record: size \(rh.offset) beyond the largest image size \(LogLimits.maxImageBytes)" : nil
        case .marker, .seal:
            return nil
        }
    }

    /// True when a valid record header starts somewhere in `from..<end` (searched up to one maximal record).
    private static func validRecordFollows(_ all: UnsafeRawBufferPointer, from: Int) -> Bool {
        let limit = min(all.count - RecordHeader.size, from + RecordHeader.maxDataLength + RecordHeader.size)
        guard from <= limit else { return false }
        let magic0 = UInt8(RecordHeader.magic & 0xff)
        var i = from
        while i <= limit {
            if all[i] == magic0,
               (try? RecordHeader.decode(UnsafeRawBufferPointer(rebasing: all[i..<(i + RecordHeader.size)]))) != nil {
                return true
            }
            i += 1
        }
        return false
    }
}
