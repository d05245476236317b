#!/usr/bin/env bash
# Tools/bench-net.sh - shipping to a receiver (`replicafs serve`, mutual TLS over loopback)
# against shipping to a local directory store, side by side in one run, through one real mount:
#   1. throughput: the same random writes (dd through the mount, continuous replication)
#      shipped to a directory store and to `serve`; seconds from the write's start to the last
#      byte committed; ratio net / local (the issue's target: at least 0.8x). Rounds alternate
#      which target goes first.
#   2. compression: a compressible workload (text) shipped without and with --compress; the
#      bytes that crossed (`bytesSent`) against the log bytes (`logBytesShipped`).
#   3. throttle: the same random writes shipped to `serve` at --max-bandwidth; measured rate
#      against the limit.
# Every run is printed (and with --out appended to FILE) as a markdown table.
#
# Times end at the poll that first sees the bytes, taken as the midpoint between the start of
# that poll and the start of the one before, or dd's end for the first. Polls (every 20 ms) ask
# the daemon's control socket from one python process (Tools/bench-ship.py); each run starts
# after a `sync`, so it does not pay for the writeback of the run before.
#
# Usage: sudo Tools/bench-net.sh [--release] [--mib N] [--rounds N] [--limit RATE_MB] [--out FILE]
#   --release     use the release build (.build/release/replicafs) instead of the debug one
#   --mib N       MiB written per throughput run (default 64)
#   --rounds N    throughput rounds (default 3)
#   --limit M     --max-bandwidth in MB/s for the throttle run (default 5; data 4x the limit)
# Environment: REPLICAFS_BIN (default .build/debug/replicafs), BENCH_DIR (default
#              /var/tmp/replicafs-bench-net, must not be tmpfs), REPLICAFS_RUN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=64 ROUNDS=3 LIMIT=5 OUT="" BUILD=debug
usage() { echo "usage: $0 [--release] [--mib N] [--rounds N] [--limit MB_PER_S] [--out FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --release) BUILD=release; shift;;
    --mib) [ $# -ge 2 ] || usage; MIB=$2; shift 2;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2;;
    --limit) [ $# -ge 2 ] || usage; LIMIT=$2; shift 2;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2;;
    *) usage;;
  esac
done
for v in "$MIB" "$ROUNDS" "$LIMIT"; do [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench-net.sh: '$v' is not a positive integer" >&2; exit 2; }; done
CMDLINE="$0$([ "$BUILD" = release ] && echo " --release" || true) --mib $MIB --rounds $ROUNDS --limit $LIMIT"
RFS=${REPLICAFS_BIN:-$PWD/.build/$BUILD/replicafs}
[ -x "$RFS" ] || { echo "bench-net.sh: no replicafs binary at $RFS (swift build, or set REPLICAFS_BIN)" >&2; exit 2; }
W=${BENCH_DIR:-/var/tmp/replicafs-bench-net}
SERVE_PID=""
cleanup() {
  mountpoint -q "$W/mnt" 2>/dev/null && { "$RFS" unmount "$W/mnt" >/dev/null 2>&1 || umount -l "$W/mnt"; }
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

rm -rf "$W" && mkdir -p "$W/disks" "$W/mnt" "$W/local" "$W/store"
"$RFS" certs init --name localhost --pki "$W/pki" >/dev/null
out=$("$RFS" serve --store "$W/store" --listen 127.0.0.1:0 --pki "$W/pki")
PORT=$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' <<<"$out")
SERVE_PID=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
[ -n "$PORT" ] && [ -n "$SERVE_PID" ] || { echo "bench-net.sh: serve did not start: $out" >&2; exit 1; }
URL="replicafs://localhost:$PORT"
SIZE=$(( MIB * 2 + LIMIT * 4 + 64 ))
for vm in loc net netz locz thr; do truncate -s "${SIZE}M" "$W/disks/$vm.img"; done
"$RFS" mount "$W/disks" "$W/mnt" >/dev/null
"$RFS" protect loc --disks-dir "$W/disks" --disk loc.img --target "$W/local" --copy-frequency continuous >/dev/null
"$RFS" protect locz --disks-dir "$W/disks" --disk locz.img --target "$W/local" --copy-frequency continuous >/dev/null
"$RFS" protect net --disks-dir "$W/disks" --disk net.img --target "$URL" --pki "$W/pki" --copy-frequency continuous >/dev/null
"$RFS" protect netz --disks-dir "$W/disks" --disk netz.img --target "$URL" --pki "$W/pki" --copy-frequency continuous --compress >/dev/null
"$RFS" protect thr --disks-dir "$W/disks" --disk thr.img --target "$URL" --pki "$W/pki" --copy-frequency continuous \
  --max-bandwidth "${LIMIT}MB/s" >/dev/null

wait_protected() {
  for _ in $(seq 1 1200); do "$RFS" status "$W/mnt" | grep -q "VM $1: protected" && return 0; sleep 0.05; done
  echo "bench-net.sh: VM $1 not protected" >&2; exit 1
}
for vm in loc locz net netz thr; do wait_protected $vm; done

# ship VM MIB SEEK_MIB SOURCE: writes MIB MiB from SOURCE (a file) through the mount, waits
# until the VM's log bytes shipped grew by them; prints "seconds logBytes sentBytes ddSeconds
# pollEndSeconds" (Tools/bench-ship.py: it polls the daemon's control socket from one process,
# where a `status --json` and python per poll took about a quarter of the CPUs). Dirty pages of
# the run before are written out first (sync, not timed), so no run pays for another's writeback.
ship() {
  sync
  python3 Tools/bench-ship.py "${REPLICAFS_RUN_DIR:-/run/replicafs}" "$W/mnt" "$1" "$2" "$3" "$4" "$W/mnt/$1.img"
}

RANDMIB=$(( MIB > LIMIT * 4 ? MIB : LIMIT * 4 ))
head -c $(( RANDMIB << 20 )) /dev/urandom >"$W/random.bin"
# The licenses are about 260 KiB: enough copies for MIB (4 per MiB), with a margin.
for _ in $(seq 1 $(( MIB * 4 + 400 ))); do cat /usr/share/common-licenses/* 2>/dev/null || true; done | head -c $(( MIB << 20 )) >"$W/text.bin"
[ "$(stat -c %s "$W/text.bin")" -eq $(( MIB << 20 )) ] || { echo "bench-net.sh: cannot make $MIB MiB of text from /usr/share/common-licenses" >&2; exit 1; }

TABLE=$(mktemp)
{
  echo "#### bench-net.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
  echo
  echo "\`$CMDLINE\` with $(basename "$RFS") $("$RFS" --version 2>/dev/null | head -1)"
  echo
  echo "| run | what | local store | serve (TLS, loopback) | net / local |"
  echo "|---|---|---|---|---|"
} >"$TABLE"

SUM=0
for r in $(seq 1 "$ROUNDS"); do
  seek=$(( (r - 1) % 2 * MIB ))
  if [ $(( r % 2 )) -eq 1 ]; then
    log "round $r: local first"; L=$(ship loc "$MIB" "$seek" "$W/random.bin"); N=$(ship net "$MIB" "$seek" "$W/random.bin")
  else
    log "round $r: serve first"; N=$(ship net "$MIB" "$seek" "$W/random.bin"); L=$(ship loc "$MIB" "$seek" "$W/random.bin")
  fi
  read -r ls lb _ ldd _ <<<"$L"; read -r ns nb _ ndd _ <<<"$N"
  ratio=$(python3 -c "print(f'{($nb/$ns)/($lb/$ls):.2f}')")
  echo "| $r | $MIB MiB random, delta shipping | $(python3 -c "print(f'{$lb/$ls/1e6:.1f} MB/s ({$ls} s; dd {$ldd} s)')") | $(python3 -c "print(f'{$nb/$ns/1e6:.1f} MB/s ({$ns} s; dd {$ndd} s)')") | ${ratio}x |" >>"$TABLE"
done

log "compression: $MIB MiB of text without and with --compress"
Z0=$(ship net "$MIB" $(( MIB )) "$W/text.bin"); Z1=$(ship netz "$MIB" 0 "$W/text.bin")
read -r _ l0 s0 _ <<<"$Z0"; read -r _ l1 s1 _ <<<"$Z1"
echo "| - | $MIB MiB text: bytes on the wire / log bytes | - | without --compress: $s0 / $l0 = $(python3 -c "print(f'{$s0/$l0:.3f}')"); with: $s1 / $l1 = $(python3 -c "print(f'{$s1/$l1:.3f}')") | with / without: $(python3 -c "print(f'{($s1/$l1)/($s0/$l0):.3f}')")x |" >>"$TABLE"

TM=$(( LIMIT * 4 ))
log "throttle: $TM MB at --max-bandwidth ${LIMIT}MB/s"
T=$(ship thr $(( TM * 1000000 / 1048576 )) 0 "$W/random.bin")
read -r ts _ tb tdd tseen <<<"$T"
echo "| - | throttle --max-bandwidth ${LIMIT}MB/s, $(( TM * 1000000 / 1048576 )) MiB random | - | $(python3 -c "print(f'{$tb/$ts/1e6:.2f} MB/s ({$ts} s; dd {$tdd} s; to the end of the poll that saw it {$tseen} s: {$tb/$tseen/1e6:.2f} MB/s)')") | measured / limit: $(python3 -c "print(f'{$tb/$ts/($LIMIT*1e6):.3f}')")x |" >>"$TABLE"

cat "$TABLE"
[ -n "$OUT" ] && { cat "$TABLE"; echo; } >>"$OUT"
rm -f "$TABLE"
