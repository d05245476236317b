#!/usr/bin/env bash
# The main job on an embedded default: a demo site under Mounts/demo. It creates a disk
# image, mounts it through ReplicaFS, runs a workload (ext4 on a loop device, files, an
# SQLite database, raw dd writes), rotates the logs at a cut, unmounts, shows the logs,
# and proves they replay onto the original image to the same bytes. Run as root.
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
rm -rf "$SITE" && mkdir -p "$DISKS" "$MNT" "$FS"

step() { printf '\n== %s\n' "$*"; }
step "a 256 MiB sparse disk image, and a copy of it as it is now"
truncate -s 256M "$DISKS/vm1-os.img"
cp --sparse=always "$DISKS/vm1-os.img" "$SITE/vm1-os.base.img"

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

step "replicafs unmount (logs sealed with a clean-shutdown record)"
"$RFS" unmount "$MNT"
ls -l "$DISKS"

step "replicafs log show (the second log)"
"$RFS" log show "$(ls "$DISKS"/*.hrl | sed -n 2p)"

step "replicafs log apply: replay every log onto the copy taken before the workload"
"$RFS" log apply "$DISKS"/*.hrl --to "$SITE/vm1-os.base.img"
a=$(sha256sum < "$DISKS/vm1-os.img" | cut -c1-64)
b=$(sha256sum < "$SITE/vm1-os.base.img" | cut -c1-64)
echo "image    sha256 $a"
echo "replayed sha256 $b"
[ "$a" = "$b" ] || { echo "demo: MISMATCH between the image and its replayed logs" >&2; exit 1; }
e2fsck -fn "$SITE/vm1-os.base.img" >/dev/null && echo "replayed image passes e2fsck -fn"
echo "demo: the logs reproduce the disk byte for byte"
