/// One disk of a VM as of a recovery point, read by byte range (what a failover mount, a
/// resync comparison or an export reads). Handed out by a `TargetStore`; it stays at its
/// point while the store commits and prunes.
public protocol PointReader: AnyObject {
    var vm: String { get }
    var disk: String { get }
    var pointID: Int { get }
    /// The disk's size at the point.
    var size: Int64 { get }
    /// Bytes held in memory (or mapped) to present the point, beside the base.
    var overlayBytes: Int { get }
    /// Fills `count` bytes at `offset` as of the point (zeros past the disk's end).
    func read(into buffer: UnsafeMutableRawPointer, count: Int, offset: Int64) throws
}
