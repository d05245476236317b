#!/usr/bin/env bash
# Tools/rss-soak.sh - the mount daemon's resident memory over time under a sustained random
# write load with continuous replication into a local directory store.
#
# Mounts a disks dir, protects one VM (continuous copy, a retention window longer than the run
# unless --retention says otherwise, so the window only grows: every record written stays in the
# store), runs fio random writes of 4 KiB to 64 KiB at --rate through the mount for --minutes,
# and samples the daemon's memory from /proc/PID/status every --interval seconds: VmRSS (what is
# resident), RssAnon (its heap: what an in-memory index would grow), RssFile (mapped files) and
# VmHWM (the peak). The directory store runs inside the mount daemon, so its memory is
# the daemon's. Prints a markdown table, and with --out also writes it to FILE.
#
# Usage: sudo Tools/rss-soak.sh [--minutes 10] [--rate 50m] [--retention 1h] [--interval 30]
#                               [--image-mib 2048] [--out FILE]
# Environment: BENCH_DIR (work dir, default /var/tmp/replicafs-rss; must not be tmpfs),
#              REPLICAFS_BIN (default: the release build .build-release/release/replicafs),
#              REPLICAFS_RUN_DIR (keeps this run's daemons apart from others').
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=10 RATE=50m RETENTION=1h INTERVAL=30 IMAGE_MIB=2048 OUT=""
die() { echo "rss-soak.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) [[ $# -ge 2 ]] || die "--minutes needs a value"; MINUTES=$2; shift ;;
        --rate) [[ $# -ge 2 ]] || die "--rate needs a value"; RATE=$2; shift ;;
        --retention) [[ $# -ge 2 ]] || die "--retention needs a value"; RETENTION=$2; shift ;;
        --interval) [[ $# -ge 2 ]] || die "--interval needs a value"; INTERVAL=$2; shift ;;
        --image-mib) [[ $# -ge 2 ]] || die "--image-mib needs a value"; IMAGE_MIB=$2; shift ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
[[ $MINUTES =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v m="$MINUTES" 'BEGIN { exit !(m > 0) }' || die "--minutes needs a positive number, not '$MINUTES'"
[[ $INTERVAL =~ ^[1-9][0-9]*$ ]] || die "--interval needs a positive number of seconds, not '$INTERVAL'"
[[ $IMAGE_MIB =~ ^[1-9][0-9]*$ ]] || die "--image-mib needs a positive number, not '$IMAGE_MIB'"
[[ $RATE =~ ^[1-9][0-9]*[kKmMgG]?$ ]] || die "--rate needs a fio rate such as 50m, not '$RATE'"
[[ $EUID -eq 0 ]] || die "must run as root (FUSE mounts)"
command -v fio >/dev/null || die "fio is not installed (apt-get install -y fio)"

RFS=${REPLICAFS_BIN:-$PWD/.build-release/release/replicafs}
[[ -x $RFS ]] || die "no replicafs binary at $RFS (build with: swift build -c release --scratch-path .build-release, or set REPLICAFS_BIN)"
W=${BENCH_DIR:-/var/tmp/replicafs-rss}
mkdir -p "$W"
[[ "$(stat -f -c %T "$W")" != tmpfs ]] || die "$W is on tmpfs; set BENCH_DIR to a directory on a real disk"
export REPLICAFS_ALLOW_ANY_FREQUENCY=1
SECONDS_LOAD=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')

FIO_PID=""
cleanup() {
    [[ -z $FIO_PID ]] || kill "$FIO_PID" 2>/dev/null || true
    if mountpoint -q "$W/mnt"; then "$RFS" unmount "$W/mnt" >/dev/null 2>&1 || umount -l "$W/mnt" || true; fi
}
trap cleanup EXIT
cleanup
rm -rf "$W/disks" "$W/store" "$W/mnt" && mkdir -p "$W/disks" "$W/mnt" "$W/store"

fio --name=prep --filename="$W/disks/vm.img" --rw=write --bs=1M --size="${IMAGE_MIB}M" --output=/dev/null
"$RFS" mount "$W/disks" "$W/mnt" >/dev/null
# The daemon: the process of this binary whose command line names this mountpoint.
PID=""
for _ in $(seq 1 100); do
    for d in /proc/[0-9]*; do
        [[ $(readlink "$d/exe" 2>/dev/null) == "$(readlink -f "$RFS")" ]] || continue
        if tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qx -- "$W/mnt"; then PID=${d#/proc/}; fi
    done
    [[ -n $PID ]] && break
    sleep 0.1
done
[[ -n $PID ]] || die "cannot find the daemon of $W/mnt (a process of $RFS with $W/mnt in its command line)"
"$RFS" protect soak --disks-dir "$W/disks" --disk vm.img --target "$W/store" \
    --copy-frequency continuous --retention "$RETENTION" >/dev/null
for _ in $(seq 1 600); do "$RFS" status "$W/mnt" | grep -q "VM soak: protected" && break; sleep 0.1; done

kib() { awk -v k="$1" '$1 == k ":" { print $2 }' "/proc/$PID/status"; }
points() { python3 -c "import json; print(len(json.load(open('$W/store/soak/catalog.json'))['points']))" 2>/dev/null || echo '?'; }
store_mib() { du -sm "$W/store" | cut -f1; }

fio --name=load --filename="$W/mnt/vm.img" --rw=randwrite --bsrange=4k-64k --size="${IMAGE_MIB}M" \
    --rate="$RATE" --ioengine=psync --time_based --runtime="$SECONDS_LOAD" \
    --output-format=json --output="$W/load.json" &
FIO_PID=$!
rows=()
t0=$SECONDS
sample() {
    rows+=("| $((SECONDS - t0)) | $(( $(kib VmRSS) / 1024 )) | $(( $(kib RssAnon) / 1024 )) | $(( $(kib RssFile) / 1024 )) | $(( $(kib VmHWM) / 1024 )) | $(points) | $(store_mib) |")
    echo "${rows[-1]}" >&2
}
sample
while kill -0 "$FIO_PID" 2>/dev/null; do
    for _ in $(seq 1 "$INTERVAL"); do kill -0 "$FIO_PID" 2>/dev/null || break; sleep 1; done
    kill -0 "$PID" 2>/dev/null || die "the daemon (pid $PID) exited during the run"
    sample
done
wait "$FIO_PID" || die "fio failed (see $W/load.json)"
FIO_PID=""
sleep 3
sample
read -r load_mbs ios < <(python3 -c "import json; j = json.load(open('$W/load.json'))['jobs'][0]['write']; print(f\"{j['bw_bytes'] / 1e6:.1f} {j['total_ios']}\")")

report() {
    echo "## Resident memory of the mount daemon under sustained random writes"
    echo
    echo "- command: \`REPLICAFS_BIN=$RFS bash Tools/rss-soak.sh --minutes $MINUTES --rate $RATE --retention $RETENTION --interval $INTERVAL --image-mib $IMAGE_MIB\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); kernel $(uname -r); $(nproc) CPUs; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- binary: $RFS, built $(date -u -r "$RFS" '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- load: fio randwrite, 4-64 KiB blocks, --rate $RATE, ${SECONDS_LOAD} s over a ${IMAGE_MIB} MiB image: $load_mbs MB/s, $ios writes logged (one record each); continuous replication, retention $RETENTION"
    echo
    echo "| seconds | VmRSS MiB | RssAnon MiB | RssFile MiB | VmHWM MiB | points in the store | store MiB |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
}
if [[ -n $OUT ]]; then report | tee "$OUT"; else report; fi
