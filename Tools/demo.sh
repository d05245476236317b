#!/usr/bin/env bash
# The main job on an embedded default: a demo site under Mounts/demo. It creates a disk
# image, mounts it through ReplicaFS, runs a workload (ext4 on a loop device, files, an
# SQLite database, raw dd writes), rotates the logs at a cut, protects the disk to a target
# store, cuts a recovery point and exports it (equal to the source), unmounts, and replays
# the logs left at the source onto the export to the same bytes. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
source Tools/setup.sh
export PATH="/opt/swift/usr/bin:$PATH"
swift build
RFS="$PWD/.build/debug/replicafs"
SITE="$PWD/Mounts/demo"
DISKS="$SITE/disks" MNT="$SITE/mnt" FS="$SITE/fs"

cleanup() {
  mountpoint -q "$FS" && umount "$FS" || true
  mountpoint -q "$MNT" && { "$RFS" unmount "$MNT" || umount -l "$MNT"; } || true
}
trap cleanup EXIT
cleanup
rm -rf "$SITE" && mkdir -p "$DISKS" "$MNT" "$FS" "$SITE/store"

step() { printf '\n== %s\n' "$*"; }
step "a 256 MiB sparse disk image"
truncate -s 256M "$DISKS/vm1-os.img"

step "replicafs mount $DISKS $MNT"
"$RFS" mount "$DISKS" "$MNT"
ls -l "$MNT"

step "workload: mkfs.ext4 through the mount, loop-mount it, write files and a database"
mkfs.ext4 -q -F "$MNT/vm1-os.img"
mount -o loop "$MNT/vm1-os.img" "$FS"
cp -a /usr/share/zoneinfo "$FS/zoneinfo"
dd if=/dev/urandom of="$FS/blob.bin" bs=1M count=16 status=none
sqlite3 "$FS/app.db" "create table orders(id integer primary key, item text);
  insert into orders(item) values ('disk'),('replica'),('failover');"
umount "$FS"

step "replicafs rotate: seal the logs at one cut, keep writing into the next"
"$RFS" rotate "$MNT"
dd if=/dev/urandom of="$MNT/vm1-os.img" bs=4k count=256 seek=50000 conv=notrunc,fsync status=none
"$RFS" status "$MNT"

step "replicafs protect: replicate the disk to a target store (the secondary site)"
"$RFS" protect demo-vm --disks-dir "$DISKS" --disk vm1-os.img --target "$SITE/store" --copy-frequency 30s
for i in $(seq 1 300); do "$RFS" status "$MNT" | grep -q "VM demo-vm: protected" && break; sleep 0.1; done
dd if=/dev/urandom of="$MNT/vm1-os.img" bs=64k count=32 seek=1000 conv=notrunc status=none
"$RFS" snapshot demo-vm --wait
"$RFS" points demo-vm --target "$SITE/store"
"$RFS" export demo-vm --target "$SITE/store" --point latest --disk vm1-os.img --to "$SITE/exported.img"
a=$(sha256sum < "$MNT/vm1-os.img" | cut -c1-64)
b=$(sha256sum < "$SITE/exported.img" | cut -c1-64)
echo "source   sha256 $a"
echo "exported sha256 $b"
[ "$a" = "$b" ] || { echo "demo: the exported recovery point differs from the source" >&2; exit 1; }

step "replicafs failover --test: a DR drill mounts the point as a writable disk, no copy, replication untouched"
mkdir -p "$SITE/drill"
"$RFS" failover demo-vm --target "$SITE/store" --point latest --mount "$SITE/drill" --test
c=$(sha256sum < "$SITE/drill/vm1-os.img" | cut -c1-64)
echo "drill    sha256 $c"
[ "$a" = "$c" ] || { echo "demo: the drill's disk differs from the recovery point" >&2; exit 1; }
dd if=/dev/zero of="$SITE/drill/vm1-os.img" bs=64k count=4 conv=notrunc,fsync status=none
"$RFS" status
"$RFS" failover cleanup demo-vm --target "$SITE/store"
"$RFS" unprotect demo-vm --disks-dir "$DISKS"

step "replicafs unmount (logs sealed with a clean-shutdown record)"
"$RFS" unmount "$MNT"
ls -l "$DISKS"

step "replicafs log show (the last log)"
"$RFS" log show "$(ls "$DISKS"/*.hrl | tail -1)"

step "replicafs log apply: the logs left at the source replay onto the exported point"
"$RFS" log apply "$DISKS"/*.hrl --to "$SITE/exported.img"
a=$(sha256sum < "$DISKS/vm1-os.img" | cut -c1-64)
b=$(sha256sum < "$SITE/exported.img" | cut -c1-64)
echo "image    sha256 $a"
echo "replayed sha256 $b"
[ "$a" = "$b" ] || { echo "demo: MISMATCH between the image and its replayed logs" >&2; exit 1; }
e2fsck -fn "$SITE/exported.img" >/dev/null 2>&1 && echo "replayed image passes e2fsck -fn"
echo "demo: the logs reproduce the disk byte for byte"
