#!/usr/bin/env bash
# Replication benchmark (issue 3): under a sustained fio write load through the mount with
# continuous replication, the lag from a write's acknowledgement to its recovery point being
# committed at the target (p50, p99 over the cycles), and the target's apply throughput as a
# ratio of the disk's own sequential write speed measured in the same run. Run as root.
#   bash Tools/bench-replication.sh [--rate 50m] [--seconds 30] [--baseline-bin PATH [--rounds N]] [--out FILE]
# With --baseline-bin (or REPLICAFS_BASE_BIN) the whole measurement, disk baseline included,
# runs for that binary (e.g. a build of main before a change) and then for REPLICAFS_BIN, N
# rounds interleaved (base, new, base, new, ...), and one table shows every run side by side
# with the mean of each binary's figures and new / base.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=50m SECONDS_LOAD=30 OUT="" BASE_BIN=${REPLICAFS_BASE_BIN:-} ROUNDS=1
usage() { echo "usage: $0 [--rate 50m] [--seconds 30] [--baseline-bin PATH [--rounds N]] [--out FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) [ $# -ge 2 ] || usage; RATE=$2; shift 2;;
    --seconds) [ $# -ge 2 ] || usage; SECONDS_LOAD=$2; shift 2;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2;;
    --baseline-bin) [ $# -ge 2 ] || usage; BASE_BIN=$2; shift 2;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2;;
    *) usage;;
  esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-replication.sh: --rounds needs a positive integer, not '$ROUNDS'" >&2; exit 2; }
[[ -z $BASE_BIN && $ROUNDS -ne 1 ]] && { echo "bench-replication.sh: --rounds needs --baseline-bin" >&2; exit 2; }
if [ -n "$BASE_BIN" ]; then
  [ -f "$BASE_BIN" ] && [ -x "$BASE_BIN" ] || { echo "bench-replication.sh: baseline binary $BASE_BIN is not an executable file" >&2; exit 2; }
  BASE_BIN="$(cd "$(dirname "$BASE_BIN")" && pwd)/$(basename "$BASE_BIN")"
fi
export PATH="/opt/swift/usr/bin:$PATH"
# The bulk run keeps points 10 s with a 1 h copy frequency: outside the seeds' limits, on purpose.
export REPLICAFS_ALLOW_ANY_FREQUENCY=1
NEW_BIN=${REPLICAFS_BIN:-$PWD/.build-release/release/replicafs}
[ -x "$NEW_BIN" ] || swift build -c release --scratch-path .build-release >/dev/null
W=${BENCH_DIR:-/var/tmp/replicafs-bench-repl}
RESULTS=$(mktemp -d /tmp/bench-replication.XXXXXX)
RFS=$NEW_BIN  # the binary of the measurement under way (the cleanup unmounts with it)
cleanup() { mountpoint -q "$W/mnt" && { "$RFS" unmount "$W/mnt" || umount -l "$W/mnt"; } || true; }
finish() { cleanup; rm -rf "$RESULTS"; }
trap finish EXIT
for RFS in ${BASE_BIN:+"$BASE_BIN"} "$NEW_BIN"; do cleanup; done

# One whole measurement with the binary $RFS, from a fresh work dir; its table rows go to
# $RESULTS/$1.rows and its figures to $RESULTS/$1.json.
measure() {
local name=$1
rm -rf "$W" && mkdir -p "$W/disks" "$W/mnt" "$W/store"

# Disk baseline: sequential writes of a new 512 MiB file (the size of the bulk apply below)
# with a final fsync into the store's filesystem, buffered (1 MiB) and direct (8 MiB, as the
# store writes its logs), from a cold page cache. It is measured interleaved with the work
# it is compared to: right before the bulk apply, between it and the merge, and after the
# merge; each of those is compared with the mean of the baselines on either side of it, and
# every baseline is reported. The faster of buffered and direct counts, so direct I/O cannot
# flatter the ratios.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
baseline_one() {
  drop_caches
  fio --name=disk --filename="$W/store/baseline" --rw=write --size=512M --end_fsync=1 --ioengine=psync "$@" \
    --output-format=json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6, 1))'
  rm -f "$W/store/baseline"
}
baseline() {  # -> "buffered direct best" in MB/s
  local b d
  b=$(baseline_one --bs=1M); d=$(baseline_one --bs=8M --direct=1)
  echo "$b $d $(python3 -c "print(max($b, $d))")"
}

fio --name=prep --filename="$W/disks/vm.img" --rw=write --bs=1M --size=1G --output=/dev/null
fio --name=prep --filename="$W/disks/bulk.img" --rw=write --bs=1M --size=512M --output=/dev/null
"$RFS" mount "$W/disks" "$W/mnt" >/dev/null
"$RFS" protect bench --disks-dir "$W/disks" --disk vm.img --target "$W/store" --copy-frequency continuous --retention 1h >/dev/null
for i in $(seq 1 600); do "$RFS" status "$W/mnt" | grep -q "VM bench: protected" && break; sleep 0.1; done
fio --name=load --filename="$W/mnt/vm.img" --rw=randwrite --bs=64k --size=1G --rate="$RATE" \
  --ioengine=psync --time_based --runtime="$SECONDS_LOAD" --output-format=json > "$W/load.json"
sleep 3
"$RFS" status "$W/mnt" --json > "$W/status.json"

# Bulk apply: 512 MiB logged through the mount, then one snapshot ships and commits it all
# (flush, cut, verify every checksum, store the logs as the point's redo logs, fsync, commit).
# Then, once those points have expired (retention 10 s), the next snapshot's prune merges the
# 512 MiB of redo logs into the base: timed too, since over a window every byte is written twice.
"$RFS" protect bulk --disks-dir "$W/disks" --disk bulk.img --target "$W/store" --copy-frequency 1h --retention 10s >/dev/null
for i in $(seq 1 600); do "$RFS" status "$W/mnt" | grep -q "VM bulk: protected" && break; sleep 0.1; done
"$RFS" snapshot bulk >/dev/null
dd if=/dev/urandom of="$W/mnt/bulk.img" bs=1M count=512 conv=notrunc,fsync status=none
read -r b1_buf b1_dir b1 <<<"$(baseline)"
apply_seconds() {
  "$RFS" status "$W/mnt" --json | python3 -c 'import json,sys; print([v for v in json.load(sys.stdin)[0]["vms"] if v["vm"] == "bulk"][0]["applySeconds"])'
}
a0=$(apply_seconds)
drop_caches
t0=$(date +%s.%N); "$RFS" snapshot bulk >/dev/null; t1=$(date +%s.%N)
a1=$(apply_seconds)
bulk_mbs=$(python3 -c "print(512*1048576/1e6/($t1-$t0))")
commit_mbs=$(python3 -c "print(512*1048576/1e6/($a1-$a0))")
read -r b2_buf b2_dir b2 <<<"$(baseline)"
sleep 11
dd if=/dev/urandom of="$W/mnt/bulk.img" bs=4k count=1 conv=notrunc,fsync status=none
drop_caches
t2=$(date +%s.%N); "$RFS" snapshot bulk >/dev/null; t3=$(date +%s.%N)
merge_mbs=$(python3 -c "print(512*1048576/1e6/($t3-$t2))")
read -r b3_buf b3_dir b3 <<<"$(baseline)"
buffered_mbs="$b1_buf / $b2_buf / $b3_buf"; direct_mbs="$b1_dir / $b2_dir / $b3_dir"
bulk_disk=$(python3 -c "print(($b1 + $b2) / 2)")
merge_disk=$(python3 -c "print(($b2 + $b3) / 2)")
disk_mbs=$(python3 -c "print(($b1 + $b2 + $b3) / 3)")
"$RFS" unmount "$W/mnt" >/dev/null
base_through=$(python3 -c "import json; print(json.load(open('$W/store/bulk/catalog.json'))['baseThrough'])" 2>/dev/null || echo '?')

python3 - "$W/status.json" "$W/load.json" "$disk_mbs" "$RATE" "$SECONDS_LOAD" "$bulk_mbs" "$merge_mbs" "$base_through" "$buffered_mbs" "$direct_mbs" "$commit_mbs" "$RESULTS/$name.json" "$bulk_disk" "$merge_disk" >"$RESULTS/$name.rows" <<'PY'
import json, sys
status = [v for v in json.load(open(sys.argv[1]))[0]["vms"] if v["vm"] == "bench"][0]
bulk = float(sys.argv[6])
load = json.load(open(sys.argv[2]))["jobs"][0]["write"]["bw_bytes"] / 1e6
disk = float(sys.argv[3])
lags = sorted(status["recentLags"])
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
apply_mbs = status["appliedBytes"] / 1e6 / max(status["applySeconds"], 1e-9)
print(f"| sustained write load through the mount | {load:.1f} MB/s (fio randwrite 64 KiB, --rate {sys.argv[4]}, {sys.argv[5]} s) |")
print(f"| replication cycles measured | {len(lags)} |")
print(f"| lag, write to committed point: p50 | {pick(0.5):.2f} s |")
print(f"| lag, write to committed point: p99 | {pick(0.99):.2f} s |")
bulk_disk, merge_disk = float(sys.argv[13]), float(sys.argv[14])
print(f"| disk's sequential write, new 512 MiB file + fsync, cold cache, store filesystem, before the bulk apply / between it and the merge / after the merge (each ratio below uses the faster of buffered and direct, mean of the baselines either side of it) | buffered 1 MiB {sys.argv[9]}; direct 8 MiB {sys.argv[10]} MB/s |")
print(f"| bulk apply: 512 MiB shipped and committed by one snapshot from a cold cache, end to end (the `snapshot` command's wall time) | {bulk:.0f} MB/s = {bulk/bulk_disk:.2f}x the disk ({bulk_disk:.0f}) |")
commit = float(sys.argv[11])
print(f"| the same, the store's commit alone (verify, store the redo logs, fsync, catalog; from status) | {commit:.0f} MB/s = {commit/bulk_disk:.2f}x the disk |")
merge = float(sys.argv[7])
print(f"| merge: those 512 MiB of redo logs merged into the base once expired, cold cache (snapshot + prune; base now at point {sys.argv[8]}) | {merge:.0f} MB/s = {merge/merge_disk:.2f}x the disk ({merge_disk:.0f}) |")
print(f"| commit throughput during the continuous cycles (log bytes / commit time, per-cycle fsyncs included) | {apply_mbs:.0f} MB/s = {apply_mbs/disk:.2f}x the disk |")
# The figure of each row above, in order, for the side-by-side table.
json.dump([load, len(lags), pick(0.5), pick(0.99), disk, bulk / bulk_disk, commit / bulk_disk, merge / merge_disk, apply_mbs / disk],
          open(sys.argv[12], "w"))
PY
}

binary_note() {  # binary -> "PATH, built DATE, tree DIR at git REV" (the git tree holding the binary, if any)
  local root
  printf '%s, built %s' "$1" "$(date -u -r "$1" '+%Y-%m-%d %H:%M:%S UTC')"
  if root=$(git -C "$(dirname "$1")" rev-parse --show-toplevel 2>/dev/null); then
    printf ', tree %s at git %s%s' "$root" "$(git -C "$root" rev-parse --short HEAD)" "$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
  fi
}

if [ -z "$BASE_BIN" ]; then
  RFS=$NEW_BIN; measure run
  {
    echo "## Replication lag and apply throughput"
    echo
    echo "- command: \`bash Tools/bench-replication.sh --rate $RATE --seconds $SECONDS_LOAD\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) CPUs"
    echo
    echo "| measure | value |"
    echo "|---|---|"
    cat "$RESULTS/run.rows"
  } | tee ${OUT:+"$OUT"}
  exit 0
fi

names=()
for ((r = 1; r <= ROUNDS; r++)); do
  for b in base new; do
    if [ $b = base ]; then RFS=$BASE_BIN; else RFS=$NEW_BIN; fi
    echo "[$(date +%H:%M:%S)] round $r: $b ($RFS)" >&2
    measure "$b-$r"
    names+=("$b-$r")
  done
done
table=$(python3 - "$RESULTS" "${names[@]}" <<'PY'
import json, re, sys
d, names = sys.argv[1], sys.argv[2:]
rows = {n: [re.match(r"\| (.*) \| (.*) \|$", l).groups() for l in open(f"{d}/{n}.rows").read().splitlines()] for n in names}
figs = {n: json.load(open(f"{d}/{n}.json")) for n in names}
# Per row: how the mean of each binary's figure is shown.
fmts = ["{:.1f} MB/s", "{:.0f}", "{:.2f} s", "{:.2f} s", "{:.0f} MB/s", "{:.2f}x", "{:.2f}x", "{:.2f}x", "{:.2f}x"]
mean = lambda b, i: sum(figs[n][i] for n in names if n.startswith(b)) / sum(1 for n in names if n.startswith(b))
head = "| measure | " + " | ".join(f"{'base' if n.startswith('base') else 'new'}, round {n.split('-')[1]}" for n in names) + " | base, mean | new, mean | new / base |"
print(head)
print("|---|" + "---|" * (len(names) + 3))
for i, (measure, _) in enumerate(rows[names[0]]):
    b, n = mean("base", i), mean("new", i)
    ratio = f"{n / b:.2f}x" if b else "-"
    print(f"| {measure} | " + " | ".join(rows[x][i][1] for x in names) + f" | {fmts[i].format(b)} | {fmts[i].format(n)} | {ratio} |")
PY
)
{
  echo "## Replication lag and apply throughput: baseline binary vs new binary"
  echo
  echo "- command: \`bash Tools/bench-replication.sh --rate $RATE --seconds $SECONDS_LOAD --baseline-bin $BASE_BIN --rounds $ROUNDS\`"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) CPUs"
  echo "- base: $(binary_note "$BASE_BIN")"
  echo "- new: $(binary_note "$NEW_BIN")"
  echo "- order: base, new in each of $ROUNDS round(s), each a full measurement from a fresh work dir with its own disk baselines interleaved with the work (before the bulk apply, between it and the merge, after the merge; same size, cold cache); the x figures are ratios to that run's baselines"
  echo
  echo "$table"
  echo
  echo "new / base: the ratio of the means; above 1 means the new binary's figure is higher (better for throughput, worse for lag)."
} | tee ${OUT:+"$OUT"}
