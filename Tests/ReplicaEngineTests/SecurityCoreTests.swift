import Foundation
import Testing
@testable import ReplicaSystem
@testable import ReplicaLog
@testable import ReplicaSource
@testable import ReplicaStore
@testable import ReplicaEngine

/// Hardening checks that need no mount (issue 16): state files never written through a planted
/// symlink, policies adopted only from root's own files, impossible times refused, store and
/// log files not readable by others.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SecurityCoreTests {
    func scratch(_ name: String) throws -> String {
        let dir = "/tmp/harden-sec-core-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("an atomic write never follows a symlink planted at its temporary name (issue 16, 1b)", .timeLimit(.minutes(1)))
    func atomicWriteIgnoresPlantedSymlink() throws {
        let dir = try scratch("atomic")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try "root's file\n".write(toFile: victim, atomically: false, encoding: .utf8)
        // The planted link, and a dangling one (O_CREAT through it would create the target).
        try FileManager.default.createSymbolicLink(atPath: dir + "/state.json.tmp", withDestinationPath: victim)
        try FileManager.default.createSymbolicLink(atPath: dir + "/other.json.tmp", withDestinationPath: dir + "/created")
        let bytes = Array("{\"new\":1}".utf8)
        try bytes.withUnsafeBytes { try FileSystem.writeAtomically(dir + "/state.json", $0) }
        try bytes.withUnsafeBytes { try FileSystem.writeAtomically(dir + "/other.json", $0) }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "root's file\n", "the symlink's target was overwritten")
        #expect(!FileManager.default.fileExists(atPath: dir + "/created"), "a file was created through a dangling symlink")
        #expect(try FileSystem.readFile(dir + "/state.json") == bytes)
        let st = try FileSystem.lstat(dir + "/state.json")
        #expect((st.st_mode & S_IFMT) == S_IFREG && st.st_mode & 0o077 == 0, "mode \(String(st.st_mode & 0o7777, radix: 8))")
    }

    @Test("a policy is adopted only from root's own files in a root-only state directory (issue 16, 1a)", .timeLimit(.minutes(1)))
    func policiesOnlyFromTrustedFiles() throws {
        let disks = try scratch("policy")
        defer { try? FileManager.default.removeItem(atPath: disks) }
        let vm = ProtectedVM(name: "v", disks: ["a.img"], target: "/nonexistent", policy: ReplicationPolicy())
        try vm.save(disksDir: disks)
        #expect(ProtectedVM.all(disksDir: disks).map(\.name) == ["v"])
        let policy = ProtectedVM.path(disksDir: disks, vm: "v")
        // A file someone else owns (nobody, 65534), or one others may write, is ignored.
        #expect(chown(policy, 65534, 65534) == 0)
        #expect(ProtectedVM.all(disksDir: disks).isEmpty, "a policy owned by another user was adopted")
        #expect(chown(policy, 0, 0) == 0 && chmod(policy, 0o666) == 0)
        #expect(ProtectedVM.all(disksDir: disks).isEmpty, "a world-writable policy was adopted")
        #expect(chmod(policy, 0o644) == 0)
        #expect(ProtectedVM.all(disksDir: disks).count == 1)
        // A state directory another user owns, or a group-writable one, is refused with one line.
        let state = disks + "/.replicafs"
        #expect(chown(state, 65534, 65534) == 0)
        #expect(ProtectedVM.all(disksDir: disks).isEmpty)
        #expect(throws: ReplicaError.self) { try StateDirectory.check(disksDir: disks) }
        #expect(throws: ReplicaError.self) { try vm.save(disksDir: disks) }
        #expect(chown(state, 0, 0) == 0 && chmod(state + "/vms", 0o775) == 0)
        do {
            try StateDirectory.check(disksDir: disks)
            Issue.record("a group-writable vms directory was accepted")
        } catch {
            #expect("\(error)".contains("refusing state directory \(state)/vms") && !"\(error)".contains("\n"), "\(error)")
        }
        // A symlink in place of the state directory is refused too.
        #expect(chmod(state + "/vms", 0o755) == 0 && rename(state, disks + "/real") == 0 && symlink(disks + "/real", state) == 0)
        #expect(throws: ReplicaError.self) { try StateDirectory.check(disksDir: disks) }
    }

    @Test("failback never writes a disk through a symlink leaving the disks directory (issue 16, 1b)", .timeLimit(.minutes(1)))
    func failbackTargetNotFollowedOutside() throws {
        let dir = try scratch("failback")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/disks/sub", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: dir + "/victim", contents: Data("x".utf8)))
        #expect(FileManager.default.createFile(atPath: dir + "/disks/sub/inner.img", contents: Data()))
        try FileManager.default.createSymbolicLink(atPath: dir + "/disks/out.img", withDestinationPath: dir + "/victim")
        try FileManager.default.createSymbolicLink(atPath: dir + "/disks/in.img", withDestinationPath: "sub/inner.img")
        #expect(FileManager.default.createFile(atPath: dir + "/disks/plain.img", contents: Data()))
        do {
            _ = try DiskEntries.pathForWriting("out.img", in: dir + "/disks")
            Issue.record("a symlink leaving the disks directory was accepted as a failback target")
        } catch {
            #expect("\(error)".contains("refusing to write disk \(dir)/disks/out.img: it is a symlink leaving the disks directory"), "\(error)")
        }
        #expect(try DiskEntries.pathForWriting("in.img", in: dir + "/disks") == dir + "/disks/sub/inner.img")
        #expect(try DiskEntries.pathForWriting("plain.img", in: dir + "/disks") == dir + "/disks/plain.img")
        #expect(try DiskEntries.pathForWriting("new.img", in: dir + "/disks") == dir + "/disks/new.img")
    }

    @Test("2026-02-30 and other impossible times are refused wherever a time is parsed (issue 16, 13)", .timeLimit(.minutes(1)))
    func impossibleTimesRefused() throws {
        for bad in ["2026-02-30T10:00:00Z", "2025-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
                    "2026-01-01T24:00:00Z", "2026-01-01T10:60:00Z", "2026-02-30"] {
            #expect(ISOTime.parse(bad) == nil, "\(bad)")
            #expect(throws: ReplicaError.self, "\(bad)") { try ReplicationPolicy.startTime(bad) }
            #expect(!RecoveryPlan.validPoint(bad), "\(bad)")
        }
        for good in ["2024-02-29T00:00:00Z", "2026-11-23T18:30:00Z", "2026-11-23T18:30:00+01:00", "2026-11-23T18:30:00.250Z"] {
            #expect(ISOTime.parse(good) != nil, "\(good)")
        }
        #expect(try ReplicationPolicy.startTime("2026-11-23T18:30:00Z") == 1_795_458_600)
    }

    @Test("a new change log takes its image's owner and mode, and stays readable only by them once sealed (issue 16, 7)", .timeLimit(.minutes(1)))
    func logInheritsImageAccess() throws {
        let dir = try scratch("logmode")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let imagePath = dir + "/a.img"
        #expect(FileManager.default.createFile(atPath: imagePath, contents: Data(count: 4096)))
        #expect(chown(imagePath, 65534, 65534) == 0 && chmod(imagePath, 0o640) == 0)
        let image = try FileDescriptor.open(imagePath, O_RDWR)
        defer { image.close() }
        let log = try ChangeLog.create(path: dir + "/" + LogName.make(image: "a.img", sequence: 1),
                                       header: LogHeader(imageName: "a.img", chainID: LogHeader.newChainID(), sequence: 1,
                                                         firstLSN: 1, createdNanos: 0, imageSize: 4096),
                                       image: image)
        var st = try FileSystem.stat(log.path)
        #expect(st.st_uid == 65534 && st.st_gid == 65534 && st.st_mode & 0o7777 == 0o640, "mode \(String(st.st_mode & 0o7777, radix: 8)) uid \(st.st_uid)")
        try log.markReadOnly()
        st = try FileSystem.stat(log.path)
        #expect(st.st_mode & 0o7777 == 0o440, "sealed mode \(String(st.st_mode & 0o7777, radix: 8))")
    }
}
