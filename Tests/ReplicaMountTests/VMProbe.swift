import Foundation
import Testing

/// What the README-feature tests ask of a site's mount and store, through the commands a user
/// types: a VM's state in `status --json`, its points, a snapshot, an export's sha256.
struct VMProbe {
    struct Mount: Decodable { var pid: Int32?; var vms: [VM] }
    struct VM: Decodable {
        var vm: String
        var state: String
        var health: String
        var healthReasons: [String]
        var lastError: String?
        var lastPoint: Int?
    }
    struct Point: Decodable { var id: Int; var time: String; var consistency: String }

    let site: Site
    var store: String { site.root + "/store" }

    func state(_ vm: String) -> VM? {
        let out = Shell.run("\"$RFS\" status '\(site.mnt)' --json").stdout
        return (try? JSONDecoder().decode([Mount].self, from: Data(out.utf8)))?.first?.vms.first { $0.vm == vm }
    }

    /// Polls `vm`'s state until `done` holds (up to `seconds`); returns the last state seen.
    @discardableResult
    func waitFor(_ vm: String, seconds: Double, _ done: (VM) -> Bool) -> VM? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let s = state(vm), done(s) { return s }
            usleep(100_000)
        }
        return state(vm)
    }

    func protect(_ vm: String, disk: String, _ extra: String) {
        Shell.must("mkdir -p '\(store)' && \"$RFS\" protect \(vm) --disks-dir '\(site.disks)' --disk '\(disk)' --target '\(store)' \(extra)")
    }

    func snapshot(_ vm: String) throws -> Point {
        try JSONDecoder().decode(Point.self, from: Data(Shell.must("\"$RFS\" snapshot \(vm) --wait --json").utf8))
    }

    func points(_ vm: String) throws -> [Point] {
        try JSONDecoder().decode([Point].self, from: Data(Shell.must("\"$RFS\" points \(vm) --target '\(store)' --json").utf8))
    }

    /// sha256 of `disk` exported at `point`.
    func exported(_ vm: String, point: String, disk: String) -> String {
        let out = "\(site.root)/export-\(vm)-\(point)-\(disk)"
        Shell.must("rm -f '\(out)' && \"$RFS\" export \(vm) --target '\(store)' --point \(point) --disk \(disk) --to '\(out)'")
        defer { Shell.run("rm -f '\(out)'") }
        return Shell.sha256(out)
    }

    static func isMounted(_ path: String) -> Bool { Shell.run("grep -q ' \(path) ' /proc/mounts").ok }

    static func date(_ iso: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: iso) ?? ISO8601DateFormatter().date(from: iso)
    }

    static func iso(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}
