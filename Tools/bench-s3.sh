#!/usr/bin/env bash
# Tools/bench-s3.sh - the object-store target against boto3 on the same Ceph RGW, side by side
# in one run (docs/benchmarks.md):
#   upload   shipped logs: N MiB written through a ReplicaFS mount, `snapshot --wait` ships the
#            log to s3:// (scan, index, multipart upload, commit), against boto3's upload_file
#            of a copy of the same log file to the same bucket
#   mount    failover mount time (--test, from the bucket) of a 64 GiB disk with 1 GiB written
#            against a 1 GiB disk with 1 GiB written
#   read     cold sequential read (dd, 4 MiB blocks) of the 1 GiB disk through a failover mount
#            served from RGW (empty S3 cache, page cache dropped) against boto3 GETs of the
#            same chunk objects, one after another
# Every run of every measurement is printed; the table gives medians and ratios.
#
# Usage: Tools/bench-s3.sh [--quick] [--rounds N] [--encrypt] [--upload-only] [--out FILE]
#   --quick        256 MiB instead of 1 GiB written (upload and disks), 64 MiB log
#   --rounds N     runs of each measurement (default 3)
#   --encrypt      also upload the same amount of logs to an encrypted store (--encrypt-key-file)
#   --upload-only  only the upload measurement
# Environment: REPLICAFS_S3_ENV (a Ceph env file, Tools/ceph.sh start; default: a cluster
# started for this run in BENCH_DIR/ceph and stopped after), REPLICAFS_BIN (default the debug
# build), BENCH_DIR (default /var/tmp/replicafs-bench-s3).
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="$0 $*"
QUICK=0; ROUNDS=3; OUT=""; ENCRYPT=0; UPLOAD_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --encrypt) ENCRYPT=1; shift ;;
    --upload-only) UPLOAD_ONLY=1; shift ;;
    *) echo "bench-s3.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
RFS="${REPLICAFS_BIN:-$(pwd)/.build/debug/replicafs}"
[ -x "$RFS" ] || { echo "bench-s3.sh: no replicafs binary at $RFS (swift build)" >&2; exit 1; }
python3 -c 'import boto3' 2>/dev/null || pip install -q boto3
BENCH_DIR="${BENCH_DIR:-/var/tmp/replicafs-bench-s3}"
if [ "$QUICK" = 1 ]; then WRITTEN_MIB=256; LOG_MIB=64; else WRITTEN_MIB=1024; LOG_MIB=256; fi

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"
OWN_CEPH=""
if [ -z "${REPLICAFS_S3_ENV:-}" ]; then
  Tools/ceph.sh start --dir "$BENCH_DIR/ceph" >&2
  REPLICAFS_S3_ENV="$BENCH_DIR/ceph/env"; OWN_CEPH=1
fi
set -a; source "$REPLICAFS_S3_ENV"; set +a
export REPLICAFS_S3_CACHE="$BENCH_DIR/cache" REPLICAFS_ALLOW_ANY_FREQUENCY=1
BUCKET="bench-$RANDOM$RANDOM"
S=$BENCH_DIR/site; MNT=$S/mnt; DISKS=$S/disks
cleanup() {
  set +e
  for m in "$BENCH_DIR"/fo-*; do grep -q " $m " /proc/mounts && umount -l "$m"; done
  for vm in up upe small big; do "$RFS" failover cleanup $vm --target "s3://$BUCKET/b" >/dev/null 2>&1; done
  grep -q " $MNT " /proc/mounts && "$RFS" unmount "$MNT" >/dev/null 2>&1
  python3 - "$BUCKET" <<'EOF' >/dev/null 2>&1
import boto3, sys
b = boto3.resource("s3").Bucket(sys.argv[1])
b.objects.all().delete(); [u.abort() for u in b.multipart_uploads.all()]; b.delete()
EOF
  [ -n "$OWN_CEPH" ] && Tools/ceph.sh stop --dir "$BENCH_DIR/ceph" >/dev/null
  rm -rf "$S" "$BENCH_DIR/cache" "$BENCH_DIR"/fo-* "$BENCH_DIR"/work-*
}
trap cleanup EXIT
python3 -c "import boto3; boto3.client('s3').create_bucket(Bucket='$BUCKET')"
mkdir -p "$MNT" "$DISKS"
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
RESULTS=$BENCH_DIR/results; : > "$RESULTS"
rec() { echo "$1 $2" >> "$RESULTS"; echo "run: $1 $2" >&2; }

# ------------------------------------------------------------------ upload
log "upload: $LOG_MIB MiB logs through the mount to s3://$BUCKET/b, and boto3 upload_file"
truncate -s $((LOG_MIB * 2))M "$DISKS/up.img"
[ "$ENCRYPT" = 0 ] || truncate -s $((LOG_MIB * 2))M "$DISKS/upe.img"
"$RFS" mount "$DISKS" "$MNT" >/dev/null
"$RFS" protect up --disks-dir "$DISKS" --disk up.img --target "s3://$BUCKET/b" --copy-frequency 1h --wait >/dev/null
if [ "$ENCRYPT" = 1 ]; then
  # The same amount of logs to an encrypted store (its own prefix, so a new store).
  head -c 32 /dev/urandom > "$BENCH_DIR/key"; chmod 600 "$BENCH_DIR/key"
  "$RFS" protect upe --disks-dir "$DISKS" --disk upe.img --target "s3://$BUCKET/e" --encrypt-key-file "$BENCH_DIR/key" --copy-frequency 1h --wait >/dev/null
fi
for r in $(seq 1 "$ROUNDS"); do
  dd if=/dev/urandom of="$MNT/up.img" bs=1M count=$LOG_MIB conv=notrunc,fsync status=none
  logf=$(ls -t "$DISKS"/up.img.*.hrl | head -1)
  cp "$logf" "$BENCH_DIR/log-copy"
  bytes=$(stat -c %s "$BENCH_DIR/log-copy")
  t0=$(now); "$RFS" snapshot up --wait >/dev/null; t1=$(now)
  rec upload-replicafs "$(echo "$bytes / ($t1 - $t0) / 1000000" | bc -l)"
  t0=$(now)
  python3 -c "import boto3,sys; boto3.client('s3').upload_file(sys.argv[1], '$BUCKET', 'boto3/log-$r')" "$BENCH_DIR/log-copy"
  t1=$(now)
  rec upload-boto3 "$(echo "$bytes / ($t1 - $t0) / 1000000" | bc -l)"
  if [ "$ENCRYPT" = 1 ]; then
    dd if=/dev/urandom of="$MNT/upe.img" bs=1M count=$LOG_MIB conv=notrunc,fsync status=none
    bytes=$(stat -c %s "$(ls -t "$DISKS"/upe.img.*.hrl | head -1)")
    t0=$(now); "$RFS" snapshot upe --wait >/dev/null; t1=$(now)
    rec upload-replicafs-encrypted "$(echo "$bytes / ($t1 - $t0) / 1000000" | bc -l)"
  fi
done
rm -f "$BENCH_DIR/log-copy"
"$RFS" unmount "$MNT" >/dev/null

if [ "$UPLOAD_ONLY" = 0 ]; then
# ------------------------------------------------------------------ mount time
log "mount: 1 GiB and 64 GiB disks, $WRITTEN_MIB MiB written each"
mkdir -p "$S/d-small" "$S/d-big"
dd if=/dev/urandom of="$S/d-small/small.img" bs=1M count=$WRITTEN_MIB status=none
truncate -s 1G "$S/d-small/small.img"
truncate -s 64G "$S/d-big/big.img"
dd if=/dev/urandom of="$S/d-big/big.img" bs=1M count=$WRITTEN_MIB seek=4096 conv=notrunc status=none
for vm in small big; do
  "$RFS" mount "$S/d-$vm" "$MNT" >/dev/null
  "$RFS" protect $vm --disks-dir "$S/d-$vm" --disk $vm.img --target "s3://$BUCKET/b" --copy-frequency 1h --wait >/dev/null
  "$RFS" snapshot $vm --wait >/dev/null
  "$RFS" unmount "$MNT" >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  for vm in small big; do
    rm -rf "$BENCH_DIR/cache" "$BENCH_DIR/fo-$vm" "$BENCH_DIR/work-$vm"; mkdir -p "$BENCH_DIR/fo-$vm"
    out=$("$RFS" failover $vm --target "s3://$BUCKET/b" --test --mount "$BENCH_DIR/fo-$vm" --work-dir "$BENCH_DIR/work-$vm" --json)
    rec "mount-$vm" "$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mountSeconds"])')"
    if [ "$vm" = small ]; then
      # ------------------------------------------------------------------ cold read
      sync; echo 3 > /proc/sys/vm/drop_caches
      t0=$(now); dd if="$BENCH_DIR/fo-$vm/small.img" of=/dev/null bs=4M count=$((WRITTEN_MIB / 4)) status=none; t1=$(now)
      rec read-replicafs "$(echo "$WRITTEN_MIB * 1048576 / ($t1 - $t0) / 1000000" | bc -l)"
      python3 - "$BUCKET" "$WRITTEN_MIB" <<'EOF' >> "$RESULTS"
import boto3, sys, time
c = boto3.client("s3"); bucket = sys.argv[1]; want = int(sys.argv[2]) << 20
keys = [o["Key"] for p in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="b/vms/small/chunks/") for o in p.get("Contents", [])]
t0 = time.time(); n = 0
for k in keys:
    if n >= want: break
    n += len(c.get_object(Bucket=bucket, Key=k, Range="bytes=0-%d" % ((4 << 20) - 1))["Body"].read())
dt = time.time() - t0
print("read-boto3 %f" % (n / dt / 1e6))
print("run: read-boto3 %f (%d bytes, %d objects)" % (n / dt / 1e6, n, len(keys)), file=sys.stderr)
EOF
    fi
    "$RFS" failover cleanup $vm --target "s3://$BUCKET/b" >/dev/null
  done
done

fi

# ------------------------------------------------------------------ table
m() { grep "^$1 " "$RESULTS" | cut -d' ' -f2 | median; }
ur=$(m upload-replicafs); ub=$(m upload-boto3)
table=$(cat <<EOF
| measurement | replicafs | reference | ratio | goal |
|---|---:|---:|---:|---|
| upload of shipped logs ($LOG_MIB MiB) to RGW, MB/s | $(printf %.1f "$ur") | boto3 upload_file $(printf %.1f "$ub") | $(printf %.2f "$(echo "$ur / $ub" | bc -l)")x | >= 1.0x |
EOF
)
if [ "$ENCRYPT" = 1 ]; then
  ue=$(m upload-replicafs-encrypted)
  table="$table
| upload of the same logs to an encrypted store (--encrypt-key-file), MB/s | $(printf %.1f "$ue") | plain store $(printf %.1f "$ur") | $(printf %.2f "$(echo "$ue / $ur" | bc -l)")x | |"
fi
if [ "$UPLOAD_ONLY" = 0 ]; then
ms=$(m mount-small); mb=$(m mount-big); rr=$(m read-replicafs); rb=$(m read-boto3)
table="$table
$(cat <<EOF
| failover mount time, 64 GiB disk / 1 GiB disk ($WRITTEN_MIB MiB written), s | $(printf %.3f "$mb") | $(printf %.3f "$ms") | $(printf %.2f "$(echo "$mb / $ms" | bc -l)") | <= 1.2 |
| cold sequential read ($WRITTEN_MIB MiB) through the failover mount, MB/s | $(printf %.1f "$rr") | boto3 GETs $(printf %.1f "$rb") | $(printf %.2f "$(echo "$rr / $rb" | bc -l)")x | |
EOF
)"
fi
echo "$table"
echo "every run:"; cat "$RESULTS"
if [ -n "$OUT" ]; then
  { echo "command: $CMDLINE"; echo "date: $(date -u +%FT%TZ)  binary: $RFS  rounds: $ROUNDS"; echo; echo "$table"; echo; echo "every run:"; sed 's/^/    /' "$RESULTS"; } > "$OUT"
fi
