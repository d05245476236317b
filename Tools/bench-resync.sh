#!/usr/bin/env bash
# Resync benchmark (issue 5): an image of random data (fully allocated, no holes), a copy,
# then 1% of its 1 MiB blocks, chosen at random, rewritten in the source. Two identical
# out-of-date copies are brought up to date in the same run: one by `replicafs resync <vm>
# --now` itself (a VM protected to a directory store holding the old image, the image changed
# beside the mount, resync window closed so only the timed command runs it: SHA-256 per 1 MiB
# block on both sides, only differing blocks written to the store, and the new recovery point
# committed, all inside the timed command), one by `rsync --inplace --no-whole-file`. Prints
# the times, their ratio, the bytes each sent (rsync's "Literal data"), and checks that the
# new point and the rsync copy both equal the source. Run as root.
#   bash Tools/bench-resync.sh [--size GiB] [--runs N] [--cold] [--out FILE]
# --size 1 makes a quick run (the default is the issue's 4 GiB). Each run starts from fresh
# out-of-date copies and alternates which tool goes first; medians are reported. --cold drops
# the page cache before each side (it affects everything else running on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_GIB=4 RUNS=1 COLD=0 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE_GIB=$2; shift 2;;
    --runs) RUNS=$2; shift 2;;
    --cold) COLD=1; shift;;
    --out) OUT=$2; shift 2;;
    *) echo "usage: $0 [--size GiB] [--runs N] [--cold] [--out FILE]" >&2; exit 2;;
  esac
done
[[ "$SIZE_GIB" =~ ^[0-9]+$ ]] && [ "$SIZE_GIB" -ge 1 ] || { echo "bench-resync: --size takes a whole number of GiB (1 or more)" >&2; exit 2; }
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || { echo "bench-resync: --runs takes a whole number (1 or more)" >&2; exit 2; }
command -v rsync >/dev/null || { echo "bench-resync: rsync is missing (bash Tools/setup.sh installs it)" >&2; exit 1; }
export PATH="/opt/swift/usr/bin:$PATH"
RFS=${REPLICAFS_BIN:-$PWD/.build-release/release/replicafs}
[ -x "$RFS" ] || swift build -c release --scratch-path .build-release >/dev/null
W=${BENCH_DIR:-/var/tmp/replicafs-bench-resync}
trap 'rm -rf "$W"' EXIT
rm -rf "$W" && mkdir -p "$W"

blocks=$((SIZE_GIB * 1024))
changed=$((blocks / 100))
# Random data, written in full (no holes): the old image, then the source = old with 1% of
# its 1 MiB blocks, chosen at random, rewritten.
head -c $((blocks << 20)) /dev/urandom > "$W/old.img"
cp --sparse=never "$W/old.img" "$W/src.img"
head -c $((changed << 20)) /dev/urandom > "$W/new-blocks"
i=0
for b in $(shuf -i 0-$((blocks - 1)) -n "$changed"); do
  dd if="$W/new-blocks" of="$W/src.img" bs=1M skip=$i seek="$b" count=1 conv=notrunc status=none
  i=$((i + 1))
done
rm -f "$W/new-blocks"

drop() { if [ "$COLD" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
now() { date +%s.%N; }
VM=""
rfs_cleanup() {
  mountpoint -q "$W/mnt" && { "$RFS" unmount "$W/mnt" >/dev/null || umount -l "$W/mnt"; }
  [ -z "$VM" ] || "$RFS" unprotect "$VM" --disks-dir "$W/disks" --delete-replica >/dev/null 2>&1 || true
  VM=""
}
trap 'rfs_cleanup; rm -rf "$W"' EXIT
wait_state() {  # text in `status` -> waits up to 10 min
  # `status` exits 1 while the VM's health is Warning (as it is while a resync is required):
  # read its output whatever its exit status (in a pipeline, pipefail took that 1 for "not yet").
  local out
  for _ in $(seq 1 6000); do
    out=$("$RFS" status "$W/mnt" 2>&1 || true)
    grep -q "VM $VM: $1" <<<"$out" && return 0
    sleep 0.1
  done
  echo "bench-resync: VM $VM never reached '$1'; status said:" >&2; echo "$out" >&2; exit 1
}
run_replicafs() {
  # Not timed: a fresh VM protected with the old image (its initial copy is the stale
  # replica), then the source's changes written beside the mount, which the next mount finds.
  rfs_cleanup
  rm -rf "$W/disks" "$W/store" && mkdir -p "$W/disks" "$W/mnt" "$W/store"
  cp --sparse=never "$W/old.img" "$W/disks/vm.img"
  VM="bench-resync-$$-$r"
  # A resync window that is never open during the run: only the timed command resyncs.
  local window; window="$(date -d '+2 hours' +%H:%M)-$(date -d '+3 hours' +%H:%M)"
  "$RFS" mount "$W/disks" "$W/mnt" >/dev/null
  "$RFS" protect "$VM" --disks-dir "$W/disks" --disk vm.img --target "$W/store" --copy-frequency 15m --resync-window "$window" >/dev/null
  wait_state protected
  "$RFS" unmount "$W/mnt" >/dev/null
  cp --sparse=never "$W/src.img" "$W/disks/vm.img"
  "$RFS" mount "$W/disks" "$W/mnt" >/dev/null
  wait_state "resync required"
  drop; local t0; t0=$(now)
  "$RFS" resync "$VM" --now --json > "$W/replicafs.json"
  echo "$t0 $(now)" >> "$W/replicafs.times"
  local point; point=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["point"]["id"])' "$W/replicafs.json")
  "$RFS" export "$VM" --target "$W/store" --point "$point" --disk vm.img --to "$W/replicafs.img" >/dev/null
  rfs_cleanup
}
run_rsync() {
  drop; local t0; t0=$(now)
  rsync --inplace --no-whole-file --stats "$W/src.img" "$W/rsync.img" > "$W/rsync.txt"
  echo "$t0 $(now)" >> "$W/rsync.times"
}
for r in $(seq 1 "$RUNS"); do
  # Fresh out-of-date copies, older than the source as a stale replica is (rsync would
  # otherwise skip a same-size file with the same modification time).
  rm -f "$W/replicafs.img"
  cp --sparse=never "$W/old.img" "$W/rsync.img"
  touch -d '1 hour ago' "$W/rsync.img"
  sync
  if [ $((r % 2)) = 1 ]; then run_replicafs; run_rsync; else run_rsync; run_replicafs; fi
  cmp "$W/src.img" "$W/replicafs.img" || { echo "bench-resync: the point replicafs resync made differs from the source" >&2; exit 1; }
  cmp "$W/src.img" "$W/rsync.img" || { echo "bench-resync: the rsync copy differs from the source" >&2; exit 1; }
done

python3 - "$W" "$SIZE_GIB" "$changed" "$COLD" "$OUT" <<'EOF'
import json, re, statistics, sys
w, size, changed, cold, out = sys.argv[1:]
def times(name):
    return [float(b) - float(a) for a, b in (line.split() for line in open(w + "/" + name + ".times"))]
rfs = json.load(open(w + "/replicafs.json"))["report"]
text = open(w + "/rsync.txt").read()
def stat(name):
    m = re.search(name + r": ([\d,]+)", text)
    return int(m.group(1).replace(",", "")) if m else -1
literal, total_sent = stat("Literal data"), stat("Total bytes sent")
changed_bytes = int(changed) << 20
rfs_runs, rsync_runs = times("replicafs"), times("rsync")
rfs_s, rsync_s = statistics.median(rfs_runs), statistics.median(rsync_runs)
result = {
    "imageGiB": int(size), "changedBlocks": int(changed), "changedBytes": changed_bytes,
    "pageCache": "cold" if cold == "1" else "warm", "runs": len(rfs_runs),
    "replicafs": {"seconds": round(rfs_s, 3), "runs": [round(t, 3) for t in rfs_runs], "bytesSent": rfs["bytesSent"], "bytesCompared": rfs["bytesCompared"],
                  "sentOverChanged": round(rfs["bytesSent"] / changed_bytes, 3)},
    "rsync": {"seconds": round(rsync_s, 3), "runs": [round(t, 3) for t in rsync_runs], "literalData": literal, "totalBytesSent": total_sent,
              "literalOverChanged": round(literal / changed_bytes, 3)},
    "rsyncTimeOverReplicafs": round(rsync_s / rfs_s, 2),
}
print(f"resync of a {size} GiB image, {changed} of {int(size) * 1024} 1 MiB blocks changed ({changed_bytes} bytes), page cache {result['pageCache']}, median of {len(rfs_runs)} run(s):")
print(f"  replicafs resync --now (compare, store writes, new point): {rfs_s:7.2f} s, sent {rfs['bytesSent']} bytes ({result['replicafs']['sentOverChanged']}x the changed data)")
print(f"  rsync --inplace     : {rsync_s:7.2f} s, literal data {literal} bytes ({result['rsync']['literalOverChanged']}x), total sent {total_sent}")
print(f"  rsync time / replicafs time: {result['rsyncTimeOverReplicafs']}x")
if out:
    json.dump(result, open(out, "w"), indent=2)
EOF
