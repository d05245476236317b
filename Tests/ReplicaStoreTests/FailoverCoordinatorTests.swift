import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine
@testable import ReplicaControl
@testable import ReplicaRecovery

/// The failover steps as library calls, without the CLI and without FUSE: a real directory
/// store with points made by the real write path; the "mount" opens the failed-over disks
/// in this process (the same `FailoverDisk`s the daemon serves) from what the store recorded.
@Suite(.timeLimit(.minutes(2)))
struct FailoverCoordinatorTests {
    let disks: FailoverDiskTests

    init() throws { disks = try FailoverDiskTests() }
    var base: TargetStoreTests { disks.base }

    /// Opens the failover's disks as the daemon does (from the store's state), or fails to start.
    /// Called from a plan's threads too: one lock around its records.
    // @unchecked: a test double; its records are guarded by `lock`, `failLaunch` is set before use.
    final class InProcessMounts: FailoverMounts, @unchecked Sendable {
        private let lock = Lock()
        private var openedDisks: [String: [FailoverDisk]] = [:]
        private(set) var launches = 0
        private(set) var stops: [String] = []
        var failLaunch: Error?

        var opened: [String: [FailoverDisk]] { lock.withLock { openedDisks } }

        func checkMountpoint(_ path: String) throws -> String {
            guard FileSystem.isDirectory(path) else { throw ReplicaError("mountpoint \(path) does not exist") }
            return try FileSystem.realPath(path)
        }

        func launchFailoverMount(vm: String, store: any TargetStore, mountpoint: String) throws -> LaunchedMount {
            lock.withLock { launches += 1 }
            if let failLaunch { throw failLaunch }
            let state = try #require(store.failoverState(vm))
            try FileSystem.mkdirs(state.workDirectory)
            let disks = try state.disks.map {
                try FailoverDisk(store: store, vm: vm, disk: $0, point: state.point, directory: state.workDirectory)
            }
            lock.withLock { openedDisks[mountpoint] = disks }
            return LaunchedMount(pid: getpid(), seconds: 0)
        }

        func stopMount(_ mountpoint: String) throws {
            lock.withLock {
                stops.append(mountpoint)
                openedDisks[mountpoint] = nil
            }
        }

        func isMounted(_ mountpoint: String) -> Bool { lock.withLock { openedDisks[mountpoint] != nil } }
    }

    func coordinator(_ store: DirectoryStore, _ mounts: InProcessMounts) -> FailoverCoordinator {
        FailoverCoordinator(store: store, mounts: mounts, registry: MountRegistry(runDirectory: base.dir + "/run"))
    }

    func mountpoint(_ name: String) throws -> String {
        let mp = base.dir + "/" + name
        try FileSystem.mkdirs(mp)
        return try FileSystem.realPath(mp)
    }

    func code(_ body: () throws -> Void) -> (ReplicaError.Code?, String) {
        do {
            try body()
            return (nil, "")
        } catch let e as ReplicaError {
            return (e.code, e.description)
        } catch {
            return (.unspecified, "\(error)")
        }
    }

    @Test func aTestFailoverMountsThePointAndCleanupLeavesNoTrace() throws {
        defer { base.cleanup() }
        let (store, set, expected, shipped0) = try disks.makeStore(points: 3)
        defer { try? set.close() }
        var shipped = shipped0
        let mounts = InProcessMounts()
        let c = coordinator(store, mounts)
        let mp = try mountpoint("drill")
        let networks = try FailoverNetworks(vm: "vm1", plan: "p", sourceNetworks: ["lan"], mapping: ["lan": "dr-lan"])
        let started = try c.failover(vm: "vm1", point: "2", kind: .test, mountpoint: mp, networks: networks)
        #expect(started.state.point.id == 2)
        #expect(store.failoverState("vm1")?.kind == .test)
        let work = started.state.workDirectory
        let written = try JSONDecoder().decode(FailoverNetworks.self, from: Data(try FileSystem.readFile(work + "/network.json")))
        #expect(written == networks)
        let opened = try #require(mounts.opened[mp])
        for d in opened { #expect(try disks.readAll(d) == expected[2]![d.name]!, "\(d.name) at point 2") }
        // A drill lets replication go on.
        try disks.commitRound(4, store: store, set: set, shipped: &shipped)
        #expect(try store.points("vm1").last?.id == 4)
        // A second failover, and a commit of a drill, are refused with their codes.
        let again = code { _ = try c.failover(vm: "vm1", kind: .unplanned, mountpoint: mp) }
        #expect(again.0 == .alreadyFailedOver)
        #expect(again.1 == "VM vm1 is already failed over (test failover to point 2 mounted on \(mp)): clean it up or fail back first")
        let commit = code { try c.commit(vm: "vm1") }
        #expect(commit == (.badRequest, "VM vm1 is in a test failover: it cannot be committed, only cleaned up"))
        let reprotect = code { _ = try c.reprotect(vm: "vm1", to: base.dir + "/home") }
        #expect(reprotect == (.badRequest, "VM vm1 is in a test failover: `replicafs failover cleanup vm1 --target \(store.location)` ends it; only a real failover fails back"))
        #expect(!FileSystem.exists(base.dir + "/home"), "a refused reprotect created its destination")

        try c.cleanup(vm: "vm1")
        #expect(mounts.stops == [mp])
        #expect(store.failoverState("vm1") == nil)
        #expect(!FileSystem.exists(work), "the drill's working files stay behind")
        let none = code { try c.cleanup(vm: "vm1") }
        #expect(none == (.notFailedOver, "VM vm1 has no failover to clean up"))
    }

    @Test func aMountThatFailsToStartLeavesNothingBehind() throws {
        defer { base.cleanup() }
        let (store, set, _, _) = try disks.makeStore(points: 2)
        defer { try? set.close() }
        let mounts = InProcessMounts()
        mounts.failLaunch = ReplicaError("the daemon exited before it was ready")
        let c = coordinator(store, mounts)
        let networks = try FailoverNetworks(vm: "vm1", plan: "p", sourceNetworks: [], mapping: [:])
        let failed = code { _ = try c.failover(vm: "vm1", kind: .unplanned, mountpoint: try mountpoint("m"), networks: networks) }
        #expect(failed.1 == "the daemon exited before it was ready")
        #expect(mounts.launches == 1)
        #expect(store.failoverState("vm1") == nil)
        #expect(!FileSystem.exists(base.storeDir + "/vm1/failover"), "state or network.json left behind")
        // Refused before anything is written: an unknown VM, a point that does not exist.
        #expect(code { _ = try c.failover(vm: "ghost", kind: .test, mountpoint: try mountpoint("m")) }.0 == .unknownVM)
        let missing = code { _ = try c.failover(vm: "vm1", point: "999", kind: .test, mountpoint: try mountpoint("m")) }
        #expect(missing.1 == "recovery point 999 not found for VM vm1")
        #expect(mounts.launches == 1)
        #expect(store.failoverState("vm1") == nil)
    }

    @Test func aPlannedFailoverShipsTheStoppedSourcesLastLogs() throws {
        defer { base.cleanup() }
        let (store, set, _, _) = try disks.makeStore(points: 2)
        // Writes after the last point, then the source stops (a clean close seals its logs).
        let a = try #require(set.journal(named: "a.img"))
        try base.write(a, 0x5A, count: 20_000, at: 40_000)
        try set.close()
        let final = try base.read(base.disks + "/a.img")
        let mounts = InProcessMounts()
        let c = coordinator(store, mounts)
        let mp = try mountpoint("planned")
        let pointed = code { _ = try c.failover(vm: "vm1", point: "1", kind: .planned, mountpoint: mp, disksDir: base.disks) }
        #expect(pointed == (.badRequest, "a planned failover goes to the final point it ships: leave --point out"))
        let noSource = code { _ = try c.failover(vm: "vm1", kind: .planned, mountpoint: mp) }
        #expect(noSource.0 == .badRequest)
        #expect(store.failoverState("vm1") == nil)

        let started = try c.failover(vm: "vm1", kind: .planned, mountpoint: mp, disksDir: base.disks)
        #expect(started.state.point.id == 3, "the final point")
        #expect(started.state.sourceDisksDir == (try FileSystem.realPath(base.disks)))
        #expect(try SourceLogs.list(in: base.disks, of: ["a.img", "b.img"]).isEmpty, "shipped logs stay at the source")
        let disk = try #require(mounts.opened[mp]?.first { $0.name == "a.img" })
        #expect(try disks.readAll(disk) == final)
        // Committing makes the point final: older points go, the store refuses replication.
        let committed = try c.commit(vm: "vm1")
        #expect(committed.committed)
        #expect(try store.points("vm1").map(\.id) == [3])
        #expect(code { try c.cleanup(vm: "vm1") } == (.badRequest, "the failover of VM vm1 is committed: fail back instead of cleaning up"))
        // Failback needs the failover mount's daemon: none runs in this registry.
        let failback = code { _ = try c.failback(vm: "vm1", mode: .minimizeDowntime, to: nil) }
        #expect(failback.0 == .mountNotRunning)
        #expect(failback.1.hasPrefix("the failover mount of VM vm1 on \(mp) is not running: `replicafs failover remount vm1 --target "))
        // Remount reopens the same point with the writes made since.
        try mounts.stopMount(mp)
        let again = try c.remount(vm: "vm1")
        #expect(again.state.point.id == 3)
        #expect(try disks.readAll(try #require(mounts.opened[mp]?.first { $0.name == "a.img" })) == final)
    }

    @Test func aPlanFailsOverInProcessAndReportsTheFailedStepsCode() throws {
        defer { base.cleanup() }
        let (store, set, expected, _) = try disks.makeStore(points: 2)
        defer { try? set.close() }
        try store.saveMetadata(VMMetadata(vm: "vm1", disks: ["a.img", "b.img"], networks: ["lan"]))
        let mounts = InProcessMounts()
        let steps = PlanSteps(mounts: { _ in mounts }, registry: MountRegistry(runDirectory: base.dir + "/run"))
        let root = base.dir + "/failover"
        let vm = { (name: String) in RecoveryPlan.VM(name: name, target: base.storeDir, point: "latest", mount: root + "/" + name) }
        let plan = RecoveryPlan(name: "drill", networkMapping: ["lan": "dr-lan"], groups: [
            RecoveryPlan.Group(name: "first", vms: [vm("vm1"), vm("ghost")]),
            RecoveryPlan.Group(name: "second", vms: [vm("later")]),
        ])
        let networks = try steps.mapNetworks(plan)
        #expect(networks.keys.sorted() == ["vm1"])
        let report = PlanRunner(plan: plan, operation: "test-failover") { vm in
            try steps.failover(vm, kind: .test, networks: networks[vm.name])
        }.run()
        #expect(report.failedVMs == ["ghost"])
        #expect(report.notStarted == ["second"])
        let ghost = try #require(report.groups[0].vms.first { $0.name == "ghost" })
        #expect(ghost.errorCode == .unknownVM)
        #expect(ghost.error == "unknown VM ghost in target store \(store.location)")
        #expect(!FileSystem.exists(root + "/ghost"), "the failed VM's mountpoint stays behind")
        // vm1 failed over in the same group: its disks at the latest point, its networks mapped.
        let state = try #require(store.failoverState("vm1"))
        let mp = try FileSystem.realPath(root + "/vm1")
        for d in try #require(mounts.opened[mp]) { #expect(try disks.readAll(d) == expected[2]![d.name]!) }
        let written = try JSONDecoder().decode(FailoverNetworks.self, from: Data(try FileSystem.readFile(state.workDirectory + "/network.json")))
        #expect(written.networks == [.init(source: "lan", target: "dr-lan")])
        try FailoverCoordinator(store: store, mounts: mounts).cleanup(vm: "vm1")
    }

    @Test func aFailoversOwnFilesLiveInItsWorkingDirectoryNotInTheStore() throws {
        defer { base.cleanup() }
        let (store, set, _, _) = try disks.makeStore(points: 2)
        defer { try? set.close() }
        let mounts = InProcessMounts()
        let c = coordinator(store, mounts)
        let work = base.dir + "/work"
        let mp = try mountpoint("m")
        let catalogBefore = try base.read(base.storeDir + "/vm1/catalog.json")
        let started = try c.failover(vm: "vm1", kind: .unplanned, mountpoint: mp, workDirectory: work)
        #expect(started.state.workDirectory == work)
        let disk = try #require(mounts.opened[mp]?.first { $0.name == "a.img" })
        try [UInt8](repeating: 7, count: 8192).withUnsafeBytes { try disk.write($0, offset: 0) }
        // The writes went to the working directory; the store holds only the failover's state.
        let files = try FileSystem.list(work)
        #expect(files.contains("a.img.cow"), "\(files)")
        #expect(try FileSystem.list(base.storeDir + "/vm1/failover") == ["state.json"])
        #expect(try base.read(base.storeDir + "/vm1/catalog.json") == catalogBefore)
        // A second failover may not reuse a working directory that holds files.
        try c.cleanup(vm: "vm1")
        #expect(!FileSystem.exists(work) && !FileSystem.exists(base.storeDir + "/vm1/failover"))
        try FileSystem.mkdirs(work)
        try FileSystem.writeFile(work + "/stray", "x")
        let busy = code { _ = try c.failover(vm: "vm1", kind: .test, mountpoint: mp, workDirectory: work) }
        #expect(busy == (.badRequest, "working directory \(work) is not empty"))
        #expect(store.failoverState("vm1") == nil)
    }
}
