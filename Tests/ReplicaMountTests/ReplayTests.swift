import Foundation
import Testing

/// Real mounts, real tools: what is written through the mount equals a pre-write copy of the
/// image with every logged change replayed by `replicafs log apply`.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ReplayTests {
    @Test("dd, fio, O_DIRECT, punch hole and truncate through the mount replay to the same bytes",
          arguments: [true, false])
    func ddAndFioReplay(writeback: Bool) throws {
        let site = Site("dd")
        defer { site.cleanup() }
        let img = site.disks + "/vm1.img"
        Shell.must("dd if=/dev/urandom of='\(img)' bs=1M count=32 status=none")
        let base = site.root + "/base.img"
        Shell.must("cp '\(img)' '\(base)'")
        site.mount(writeback ? "" : "--no-writeback-cache")
        let view = site.mnt + "/vm1.img"
        #expect(Shell.sha256(view) == Shell.sha256(img))
        Shell.must("dd if=/dev/urandom of='\(view)' bs=1M count=4 seek=2 conv=notrunc,fsync status=none")
        Shell.must("dd if=/dev/urandom of='\(view)' bs=4k count=64 seek=3000 oflag=direct conv=notrunc status=none")
        Shell.must("fio --name=rand --filename='\(view)' --rw=randwrite --bs=4k --size=32M --io_size=8M --ioengine=psync --randseed=7 --end_fsync=1 --output=/dev/null")
        Shell.must("fio --name=mixed --filename='\(view)' --rw=randwrite --bsrange=512-128k --size=32M --io_size=8M --ioengine=libaio --iodepth=8 --direct=1 --randseed=9 --output=/dev/null")
        Shell.must("fallocate -p -o 1048576 -l 262144 '\(view)'")
        Shell.must("truncate -s 40M '\(view)'")
        Shell.must("dd if=/dev/urandom of='\(view)' bs=64k count=3 seek=630 conv=notrunc status=none")
        let throughMount = Shell.sha256(view)
        // Logs are read-only in the mount.
        let log = site.logs(of: "vm1.img").last!
        let name = (log as NSString).lastPathComponent
        let refused = Shell.run("echo x >> '\(site.mnt)/\(name)'")
        #expect(!refused.ok && refused.stderr.contains("Permission denied"))
        #expect(Shell.run("cat '\(site.mnt)/\(name)' > /dev/null").ok)
        site.unmount()
        #expect(Shell.sha256(img) == throughMount)
        let replayed = site.replay("vm1.img", onto: base)
        #expect(Shell.sha256(replayed) == Shell.sha256(img))
        #expect(Shell.sha256(base) != Shell.sha256(img))
    }

    @Test("mkfs.ext4 and a file tree on a loop-mounted image replay to the same bytes")
    func ext4Replay() throws {
        let site = Site("ext4")
        defer { site.cleanup() }
        let img = site.disks + "/fs.img"
        Shell.must("truncate -s 128M '\(img)'")
        let base = site.root + "/base.img"
        Shell.must("cp --sparse=always '\(img)' '\(base)'")
        site.mount()
        let view = site.mnt + "/fs.img"
        Shell.must("mkfs.ext4 -q -F '\(view)'")
        let fs = site.root + "/fs"
        Shell.must("mkdir -p '\(fs)'")
        Shell.must("mount -o loop '\(view)' '\(fs)'")
        site.extraMounts.append(fs)
        Shell.must("cp -a /usr/share/zoneinfo '\(fs)/tree' && dd if=/dev/urandom of='\(fs)/blob' bs=1M count=8 status=none")
        Shell.must("sqlite3 '\(fs)/db.sqlite' 'create table t(x); insert into t values (1),(2),(3);'")
        Shell.must("rm -rf '\(fs)/tree/America' && sync")
        let treeSum = Shell.must("cd '\(fs)' && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum")
        Shell.must("umount '\(fs)'")
        site.extraMounts.removeAll()
        site.unmount()
        let replayed = site.replay("fs.img", onto: base)
        #expect(Shell.sha256(replayed) == Shell.sha256(img))
        Shell.must("e2fsck -fn '\(replayed)'")
        // The replayed filesystem holds the same files.
        Shell.must("mount -o loop,ro '\(replayed)' '\(fs)'")
        site.extraMounts.append(fs)
        let replayedSum = Shell.must("cd '\(fs)' && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum")
        #expect(replayedSum == treeSum)
    }

    @Test("rotation under a concurrent writer loses and duplicates nothing, across two images")
    func rotationUnderLoad() throws {
        let site = Site("rotate")
        defer { site.cleanup() }
        for name in ["a.img", "b.img"] {
            Shell.must("dd if=/dev/urandom of='\(site.disks)/\(name)' bs=1M count=16 status=none")
            Shell.must("cp '\(site.disks)/\(name)' '\(site.root)/base-\(name)'")
        }
        site.mount()
        let writers = ["a.img", "b.img"].map { name in
            "fio --name=w-\(name) --filename='\(site.mnt)/\(name)' --rw=randwrite --bs=4k --size=16M --ioengine=psync --time_based --runtime=6 --output=/dev/null"
        }
        let background = Shell.must("( \(writers[0]) ) > /dev/null 2>&1 & p1=$!; ( \(writers[1]) ) > /dev/null 2>&1 & echo \"$p1 $!\"")
        var cuts: [Int] = []
        for _ in 0..<12 {
            let out = Shell.must("\"$RFS\" rotate '\(site.mnt)' --json")
            struct R: Decodable { var cutID: Int; var sealed: [String] }
            let r = try JSONDecoder().decode(R.self, from: Data(out.utf8))
            #expect(r.sealed.count == 2)
            cuts.append(r.cutID)
            Shell.must("sleep 0.3")
        }
        Shell.must("for p in \(background); do while kill -0 $p 2>/dev/null; do sleep 0.2; done; done")
        #expect(cuts == cuts.sorted() && Set(cuts).count == cuts.count)
        site.unmount()
        for name in ["a.img", "b.img"] {
            #expect(site.logs(of: name).count >= 13)
            // log apply refuses gaps and LSN breaks, so equality also proves no lost or doubled write.
            let replayed = site.replay(name, onto: "\(site.root)/base-\(name)")
            #expect(Shell.sha256(replayed) == Shell.sha256("\(site.disks)/\(name)"))
            // Every rotation seals the logs of both images at the same cut id.
            let sealedCuts = site.logs(of: name).dropLast().map { log in
                Shell.must("\"$RFS\" log show '\(log)' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"cut\"])'")
            }
            #expect(sealedCuts.compactMap { Int($0) } == cuts)
        }
    }
}
