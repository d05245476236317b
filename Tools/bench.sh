#!/usr/bin/env bash
# Tools/bench.sh - fio through a ReplicaFS mount vs native, mergerfs and libfuse's passthrough_ll.
#
# Runs the same fio jobs against up to four setups in one run and prints a markdown table
# with each setup's bandwidth and its ratio to native (measured in the same run):
#   native          the image file directly in a disks dir on the local disk
#   replicafs       through a ReplicaFS mount of that disks dir (release build)
#   replicafs-base  only with --baseline-bin: the same through a second ReplicaFS binary (for
#                   example a build of main before a change), run right before replicafs in
#                   every job, so a before/after comparison shares one run's native figures
#   mergerfs        through mergerfs over the same disks dir
#   passthrough     through libfuse's example passthrough_ll (compiled into the work dir)
#
# Usage: sudo Tools/bench.sh [--quick] [--setups native,replicafs,mergerfs,passthrough]
#                            [--jobs seqwrite,randwrite1,randwrite4,dsync1,dsync4,seqread,pgbench]
#                            [--runtime S] [--baseline-bin PATH] [--rounds N] [--out FILE]
# Environment: BENCH_DIR (work dir, default /var/tmp/replicafs-bench; must not be tmpfs),
#              REPLICAFS_BIN (replicafs binary; default: release build, built if missing),
#              REPLICAFS_BASE_BIN (same as --baseline-bin),
#              BENCH_READAHEAD_KB, BENCH_MAX_RATIO (device settings every FUSE setup gets).
#
# Fairness: every FUSE setup's backing device gets the same readahead (read_ahead_kb) and
# share of the dirty-page limit (max_ratio), ReplicaFS's own defaults unless set, and the
# report shows what each setup's device held during its runs (native's disk included, not
# changed). With --rounds N every round of every setup is reported, beside the medians.
set -euo pipefail

ALL_SETUPS="native,replicafs,mergerfs,passthrough"
ALL_JOBS="seqwrite,randwrite1,randwrite4,dsync1,dsync4,seqread,pgbench"

usage() {
    cat <<EOF
Usage: $0 [--quick] [--setups LIST] [--jobs LIST] [--runtime S] [--baseline-bin PATH] [--rounds N] [--out FILE]

  --quick              smoke test: 256 MiB file, 5 s random-write runs (default: 1 GiB, 15 s)
  --setups LIST        comma-separated subset of: $ALL_SETUPS (default: all)
  --jobs LIST          comma-separated subset of: $ALL_JOBS (default: all);
                       dsync1/dsync4: 4 KiB random writes with fdatasync after each, 1 and 4 jobs
                       (a database's write-ahead log); pgbench: PostgreSQL's TPC-B-like load
                       (4 clients, --runtime seconds) on ext4 made in an image file of the setup,
                       attached through a loop device; reported in transactions per second
  --runtime S          seconds of each time-based job (random writes; default 15, 5 with --quick)
  --baseline-bin PATH  also run setup replicafs-base: a ReplicaFS mount by the binary PATH
                       (e.g. a release build of main before a change), right before replicafs
                       in every job, with its own column and ratio to native
  --rounds N           run every job N times over (default 1) and report each setup's median;
                       replicafs-base and replicafs swap places every round, so neither
                       always runs first
  --out FILE           also write the table, command line, date and kernel into FILE

Environment: BENCH_DIR (default /var/tmp/replicafs-bench, must not be tmpfs), REPLICAFS_BIN,
REPLICAFS_BASE_BIN (same as --baseline-bin), BENCH_READAHEAD_KB (default 2048) and
BENCH_MAX_RATIO (default 20): the readahead and dirty-page share set on every FUSE setup's
backing device (ReplicaFS's defaults), so no setup runs with other device settings.
Runs as root; installs fio, jq, mergerfs, fuse3, libfuse3-dev (and postgresql for pgbench)
with apt-get if missing.
EOF
}

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- arguments
CMDLINE="$0"
for _a in "$@"; do
    if [[ $_a =~ ^[A-Za-z0-9_./=,:+@%-]+$ ]]; then CMDLINE+=" $_a"; else CMDLINE+=" $(printf '%q' "$_a")"; fi
done
QUICK=0
SETUPS_ARG="$ALL_SETUPS"
OUT=""
BASE_BIN="${REPLICAFS_BASE_BIN:-}"
ROUNDS=1
JOBS_ARG="$ALL_JOBS"
RUNTIME_ARG=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --setups) [[ $# -ge 2 ]] || die "--setups needs a value"; SETUPS_ARG="$2"; shift ;;
        --setups=*) SETUPS_ARG="${1#*=}" ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a value"; OUT="$2"; shift ;;
        --out=*) OUT="${1#*=}" ;;
        --baseline-bin) [[ $# -ge 2 ]] || die "--baseline-bin needs a value"; BASE_BIN="$2"; shift ;;
        --baseline-bin=*) BASE_BIN="${1#*=}" ;;
        --rounds) [[ $# -ge 2 ]] || die "--rounds needs a value"; ROUNDS="$2"; shift ;;
        --rounds=*) ROUNDS="${1#*=}" ;;
        --jobs) [[ $# -ge 2 ]] || die "--jobs needs a value"; JOBS_ARG="$2"; shift ;;
        --jobs=*) JOBS_ARG="${1#*=}" ;;
        --runtime) [[ $# -ge 2 ]] || die "--runtime needs a value"; RUNTIME_ARG="$2"; shift ;;
        --runtime=*) RUNTIME_ARG="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

SETUPS=()
IFS=',' read -r -a _requested <<<"$SETUPS_ARG"
for s in "${_requested[@]}"; do
    case "$s" in
        native|replicafs|mergerfs|passthrough) SETUPS+=("$s") ;;
        passthrough_ll) SETUPS+=(passthrough) ;;
        replicafs-base) [[ -n "$BASE_BIN" ]] || die "setup replicafs-base needs --baseline-bin PATH"; SETUPS+=("$s") ;;
        "") ;;
        *) die "unknown setup '$s' (known: $ALL_SETUPS)" ;;
    esac
done
[[ ${#SETUPS[@]} -gt 0 ]] || die "no setups selected"
JOBS=()
IFS=',' read -r -a _requested_jobs <<<"$JOBS_ARG"
for j in "${_requested_jobs[@]}"; do
    case "$j" in
        seqwrite|randwrite1|randwrite4|dsync1|dsync4|seqread|pgbench) JOBS+=("$j") ;;
        "") ;;
        *) die "unknown job '$j' (known: $ALL_JOBS)" ;;
    esac
done
[[ ${#JOBS[@]} -gt 0 ]] || die "no jobs selected"
[[ -z $RUNTIME_ARG || $RUNTIME_ARG =~ ^[1-9][0-9]*$ ]] || die "--runtime needs a positive number of seconds, not '$RUNTIME_ARG'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds needs a positive integer, not '$ROUNDS'"
has_setup() { local s; for s in "${SETUPS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }
if [[ -n "$BASE_BIN" ]]; then
    [[ -f "$BASE_BIN" && -x "$BASE_BIN" ]] || die "baseline binary $BASE_BIN is not an executable file"
    BASE_BIN="$(cd "$(dirname "$BASE_BIN")" && pwd)/$(basename "$BASE_BIN")"
    if ! has_setup replicafs-base; then
        # Right before replicafs, so the two builds run back to back in every job.
        _with_base=()
        for s in "${SETUPS[@]}"; do
            [[ $s == replicafs ]] && _with_base+=(replicafs-base)
            _with_base+=("$s")
        done
        has_setup replicafs || _with_base+=(replicafs-base)
        SETUPS=("${_with_base[@]}")
    fi
fi

[[ $EUID -eq 0 ]] || die "must run as root (drop_caches, FUSE mounts, apt-get)"

if [[ $QUICK -eq 1 ]]; then SIZE_MIB=256; RUNTIME=5; PG_SCALE=5; PG_IMG_MIB=512; else SIZE_MIB=1024; RUNTIME=15; PG_SCALE=10; PG_IMG_MIB=1024; fi
[[ -z $RUNTIME_ARG ]] || RUNTIME=$RUNTIME_ARG

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${BENCH_DIR:-/var/tmp/replicafs-bench}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
[[ "$WORK" != *[[:space:]]* ]] || die "BENCH_DIR must not contain whitespace: $WORK"
[[ "$(stat -f -c %T "$WORK")" != tmpfs ]] || die "$WORK is on tmpfs; set BENCH_DIR to a directory on a real disk"
if [[ -n "$OUT" ]]; then
    mkdir -p "$(dirname "$OUT")"
    OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
fi

DISKS="$WORK/disks"
IMG="$DISKS/bench.img"
RESULTS="$WORK/results"
LOGS="$WORK/logs"
BUILD="$WORK/build"
declare -A MNT=([replicafs]="$WORK/mnt-replicafs" [replicafs-base]="$WORK/mnt-replicafs-base" [mergerfs]="$WORK/mnt-mergerfs" [passthrough]="$WORK/mnt-passthrough")
FUSE_SETUPS=(replicafs replicafs-base mergerfs passthrough)
declare -A DAEMON_PID=()
# The same device settings for every FUSE setup: ReplicaFS sets these on its own mount
# (MountOptions.readaheadKiB, .dirtyRatio); the peers would otherwise run with the kernel's
# FUSE defaults, so a difference in the table could be the tuning and not the file system.
BDI_READAHEAD_KB=${BENCH_READAHEAD_KB:-2048}
BDI_MAX_RATIO=${BENCH_MAX_RATIO:-20}
[[ $BDI_READAHEAD_KB =~ ^[0-9]+$ && $BDI_MAX_RATIO =~ ^[0-9]+$ && $BDI_MAX_RATIO -le 100 ]] \
    || die "BENCH_READAHEAD_KB must be a number of KiB and BENCH_MAX_RATIO a percent (0-100)"
declare -A DEVSET=()

# mergerfs: the man page's recommended cached setup plus the kernel writeback cache. xattr=nosys
# answers getxattr with ENOSYS so the kernel stops probing security.capability before every
# write (ReplicaFS and passthrough_ll do the same); without it 4 KiB random writes run ~6x slower.
MERGERFS_OPTS="allow_other,use_ino,cache.files=partial,cache.writeback=true,dropcacheonclose=true,xattr=nosys,category.create=mfs,fsname=bench-mergerfs"
PASSTHROUGH_OPTS="-o writeback -o source=$DISKS -o fsname=bench-passthrough"

# ---------------------------------------------------------------- mounts and cleanup
replicafs_bin() {  # setup -> the ReplicaFS binary that mounts and unmounts it
    case "$1" in
        replicafs) echo "${REPLICAFS_BIN:-}" ;;
        replicafs-base) echo "$BASE_BIN" ;;
    esac
}

is_mounted() {  # exact mountpoint match in the mount table (works for dead FUSE mounts too)
    awk -v mp="$1" '$2 == mp { found = 1 } END { exit !found }' /proc/self/mounts
}

wait_pid_exit() {  # pid timeout_seconds -> 0 if the process is gone
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

unmount_setup() {
    local setup=$1 mp=${MNT[$1]:-}
    [[ -n "$mp" ]] || return 0
    if is_mounted "$mp"; then
        case "$setup" in
            replicafs|replicafs-base)
                local bin
                bin=$(replicafs_bin "$setup")
                if [[ -n "$bin" && -x "$bin" ]]; then
                    "$bin" unmount "$mp" >>"$LOGS/$setup-unmount.log" 2>&1 \
                        || log "$setup unmount $mp failed (see $LOGS/$setup-unmount.log)"
                fi ;;
            *)  fusermount3 -u "$mp" 2>>"$LOGS/fusermount.log" || log "fusermount3 -u $mp failed" ;;
        esac
    fi
    if is_mounted "$mp"; then
        log "lazy-unmounting $mp"
        umount -l "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null || true
    fi
    local pid=${DAEMON_PID[$setup]:-}
    if [[ -n "$pid" ]]; then
        if ! wait_pid_exit "$pid" 20; then
            log "$setup daemon (pid $pid) still running after unmount; sending SIGTERM"
            kill "$pid" 2>/dev/null || true
            wait_pid_exit "$pid" 5 || kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        unset 'DAEMON_PID[$setup]'
    fi
    return 0
}

remove_logs() {
    find "$DISKS" -maxdepth 1 -type f -name '*.hrl' -delete 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local s
    pg_teardown
    for s in "${FUSE_SETUPS[@]}"; do unmount_setup "$s"; done
    [[ -d "$DISKS" ]] && remove_logs
    [[ $rc -eq 0 ]] || log "exiting with status $rc; all mounts cleaned up"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_setup() {
    local setup=$1 mp=${MNT[$1]} i
    mkdir -p "$mp"
    is_mounted "$mp" && unmount_setup "$setup"
    case "$setup" in
        replicafs|replicafs-base)
            "$(replicafs_bin "$setup")" mount "$DISKS" "$mp" >>"$LOGS/$setup-mount.log" 2>&1 \
                || die "$setup mount failed (see $LOGS/$setup-mount.log)" ;;
        mergerfs)
            mergerfs -f -o "$MERGERFS_OPTS" "$DISKS" "$mp" >>"$LOGS/mergerfs.log" 2>&1 &
            DAEMON_PID[mergerfs]=$! ;;
        passthrough)
            # shellcheck disable=SC2086
            "$PASSTHROUGH_BIN" -f $PASSTHROUGH_OPTS "$mp" >>"$LOGS/passthrough_ll.log" 2>&1 &
            DAEMON_PID[passthrough]=$! ;;
    esac
    for ((i = 0; i < 100; i++)); do
        if is_mounted "$mp" && [[ -f "$mp/bench.img" ]]; then tune_device "$setup"; return 0; fi
        if [[ -n "${DAEMON_PID[$setup]:-}" ]] && ! kill -0 "${DAEMON_PID[$setup]}" 2>/dev/null; then
            die "$setup daemon exited before the mount was ready (see $LOGS/)"
        fi
        sleep 0.1
    done
    die "$setup mount on $mp not ready after 10 s (see $LOGS/)"
}

bdi_of() {  # mountpoint -> its backing device info directory in /sys/class/bdi
    local dev
    dev=$(awk -v mp="$1" '$5 == mp { d = $3 } END { print d }' /proc/self/mountinfo)
    echo "/sys/class/bdi/$dev"
}

device_settings() {  # bdi directory -> "read_ahead_kb N, max_ratio N[, strict_limit N]"
    local bdi=$1
    printf 'read_ahead_kb %s, max_ratio %s' "$(cat "$bdi/read_ahead_kb")" "$(cat "$bdi/max_ratio")"
    [[ -r $bdi/strict_limit ]] && printf ', strict_limit %s' "$(cat "$bdi/strict_limit")"
    echo
}

tune_device() {  # setup -> the same readahead and dirty-page share on its FUSE device, recorded
    local setup=$1 bdi settings
    bdi=$(bdi_of "${MNT[$setup]}")
    [[ -d $bdi ]] || die "no backing device info for ${MNT[$setup]} ($bdi)"
    echo "$BDI_READAHEAD_KB" >"$bdi/read_ahead_kb" || die "cannot set $bdi/read_ahead_kb"
    echo "$BDI_MAX_RATIO" >"$bdi/max_ratio" || die "cannot set $bdi/max_ratio"
    settings=$(device_settings "$bdi")
    if [[ -n ${DEVSET[$setup]:-} && ${DEVSET[$setup]} != "$settings" ]]; then
        DEVSET[$setup]="${DEVSET[$setup]} / $settings"  # a change between runs shows
    else
        DEVSET[$setup]=$settings
    fi
}

native_device() {  # the device settings of the disk the native runs use (left as they are)
    local dev
    dev=$(findmnt -no MAJ:MIN -T "$DISKS" | head -1 | tr -d ' ')
    if [[ -d /sys/class/bdi/$dev ]]; then device_settings "/sys/class/bdi/$dev"
    else
        dev=$(lsblk -no PKNAME "$(findmnt -no SOURCE -T "$DISKS")" 2>/dev/null | head -1)
        [[ -n $dev && -r /sys/block/$dev/queue/read_ahead_kb ]] && echo "read_ahead_kb $(cat "/sys/block/$dev/queue/read_ahead_kb") (disk $dev)" || echo "unknown"
    fi
}

# ---------------------------------------------------------------- prerequisites
ensure_packages() {
    local missing=()
    command -v fio >/dev/null || missing+=(fio)
    command -v jq >/dev/null || missing+=(jq)
    command -v fusermount3 >/dev/null || missing+=(fuse3)
    if has_setup mergerfs; then command -v mergerfs >/dev/null || missing+=(mergerfs); fi
    if has_setup passthrough; then
        command -v gcc >/dev/null || missing+=(gcc)
        command -v pkg-config >/dev/null || missing+=(pkg-config)
        [[ -e /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c || -e /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c.gz ]] \
            && pkg-config --exists fuse3 2>/dev/null || missing+=(libfuse3-dev)
    fi
    if [[ " ${JOBS[*]} " == *" pgbench "* ]]; then
        command -v pgbench >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
        command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing missing packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    [[ -e /dev/fuse ]] || modprobe fuse 2>/dev/null || true
    if has_setup replicafs || has_setup replicafs-base || has_setup mergerfs || has_setup passthrough; then
        [[ -e /dev/fuse ]] || die "/dev/fuse is missing"
    fi
}

ensure_replicafs() {
    if [[ -n "${REPLICAFS_BIN:-}" ]]; then
        [[ -x "$REPLICAFS_BIN" ]] || die "REPLICAFS_BIN=$REPLICAFS_BIN is not executable"
        return
    fi
    local bin_dir
    bin_dir="$(cd "$REPO_ROOT" && swift build -c release --scratch-path .build-release --show-bin-path)"
    REPLICAFS_BIN="$bin_dir/replicafs"
    if [[ ! -x "$REPLICAFS_BIN" ]]; then
        log "building replicafs (release) in $REPO_ROOT/.build-release"
        (cd "$REPO_ROOT" && swift build -c release --scratch-path .build-release) >&2
    fi
    [[ -x "$REPLICAFS_BIN" ]] || die "release build did not produce $REPLICAFS_BIN"
}

build_passthrough() {
    local ex=/usr/share/doc/libfuse3-dev/examples f
    mkdir -p "$BUILD"
    for f in passthrough_ll.c passthrough_helpers.h; do
        if [[ -e "$ex/$f" ]]; then cp "$ex/$f" "$BUILD/$f"
        elif [[ -e "$ex/$f.gz" ]]; then zcat "$ex/$f.gz" >"$BUILD/$f"
        else die "$ex/$f not found (is libfuse3-dev installed?)"; fi
    done
    PASSTHROUGH_BIN="$BUILD/passthrough_ll"
    # passthrough_ll.c defines FUSE_USE_VERSION itself; -I for passthrough_helpers.h.
    # shellcheck disable=SC2046
    gcc -O2 -Wall -I"$BUILD" $(pkg-config --cflags fuse3) -o "$PASSTHROUGH_BIN" "$BUILD/passthrough_ll.c" \
        $(pkg-config --libs fuse3) -lpthread 2>"$LOGS/passthrough_ll-build.log" \
        || { cat "$LOGS/passthrough_ll-build.log" >&2; die "cannot compile passthrough_ll"; }
}

# ---------------------------------------------------------------- jobs
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

job_args() {  # job -> fio arguments specific to it
    case "$1" in
        seqwrite)   echo "--rw=write --bs=1M --end_fsync=1" ;;
        randwrite1) echo "--rw=randwrite --bs=4k --numjobs=1 --time_based --runtime=$RUNTIME --end_fsync=1" ;;
        randwrite4) echo "--rw=randwrite --bs=4k --numjobs=4 --group_reporting --time_based --runtime=$RUNTIME --end_fsync=1" ;;
        dsync1)     echo "--rw=randwrite --bs=4k --fdatasync=1 --numjobs=1 --time_based --runtime=$RUNTIME" ;;
        dsync4)     echo "--rw=randwrite --bs=4k --fdatasync=1 --numjobs=4 --group_reporting --time_based --runtime=$RUNTIME" ;;
        seqread)    echo "--rw=read --bs=1M" ;;
    esac
}
job_dir() { case "$1" in seqread) echo read ;; *) echo write ;; esac; }
job_desc() {
    case "$1" in
        seqwrite)   echo "seqwrite (1 MiB, ${SIZE_MIB} MiB, end_fsync)" ;;
        randwrite1) echo "randwrite1 (4 KiB, 1 job, ${RUNTIME} s, end_fsync)" ;;
        randwrite4) echo "randwrite4 (4 KiB, 4 jobs, ${RUNTIME} s, end_fsync)" ;;
        dsync1)     echo "dsync1 (4 KiB + fdatasync each, 1 job, ${RUNTIME} s)" ;;
        dsync4)     echo "dsync4 (4 KiB + fdatasync each, 4 jobs, ${RUNTIME} s)" ;;
        seqread)    echo "seqread (1 MiB, ${SIZE_MIB} MiB, cold cache)" ;;
        pgbench)    echo "pgbench (TPC-B-like, scale $PG_SCALE, 4 clients, ${RUNTIME} s; ext4 on a loop device over a ${PG_IMG_MIB} MiB image)" ;;
    esac
}

declare -A BW=() IOPS=() WALL=() ROUND_BW=() ROUND_IOPS=() ROUND_WALL=()
ROUND=1

# ---------------------------------------------------------------- device I/O and daemon CPU per operation
# What each fio operation cost below the file system, summed over the rounds: the requests the
# disk under $DISKS completed (writes and flushes from /proc/diskstats, over the fio run only, so
# a setup's unmount is not counted) and the CPU time of the FUSE daemon serving the mount. This
# separates a difference in work (more device writes or CPU per operation) from the noise of one
# round's throughput.
DISK_NAME=""
declare -A IO_SUM=()
disk_counters() {  # -> "writes sectors_written flushes" of the disk under $DISKS (empty if unknown)
    [[ -n $DISK_NAME ]] || return 0
    awk -v d="$DISK_NAME" '$3 == d { print $8, $10, ($19 == "" ? 0 : $19) }' /proc/diskstats
}
daemon_ticks() {  # setup -> utime + stime of its FUSE daemon in clock ticks (empty for native)
    local pid=""
    case "$1" in
        replicafs|replicafs-base) pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' "$LOGS/$1-mount.log" 2>/dev/null | tail -1) ;;
        native) return 0 ;;
        *) pid=${DAEMON_PID[$1]:-} ;;
    esac
    [[ -n $pid && -r /proc/$pid/stat ]] || return 0
    # Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}
note_io_per_op() {  # setup job fio_operations io_before io_after cpu_before cpu_after
    local setup=$1 job=$2 ops=$3
    [[ $ops =~ ^[0-9]+$ && $ops -gt 0 ]] || return 0
    IO_SUM[$setup,$job,ops]=$(( ${IO_SUM[$setup,$job,ops]:-0} + ops ))
    if [[ -n $4 && -n $5 ]]; then
        local a b
        read -r -a a <<<"$4"; read -r -a b <<<"$5"
        IO_SUM[$setup,$job,writes]=$(( ${IO_SUM[$setup,$job,writes]:-0} + b[0] - a[0] ))
        IO_SUM[$setup,$job,sectors]=$(( ${IO_SUM[$setup,$job,sectors]:-0} + b[1] - a[1] ))
        IO_SUM[$setup,$job,flushes]=$(( ${IO_SUM[$setup,$job,flushes]:-0} + b[2] - a[2] ))
    fi
    if [[ -n $6 && -n $7 ]]; then
        IO_SUM[$setup,$job,ticks]=$(( ${IO_SUM[$setup,$job,ticks]:-0} + $7 - $6 ))
    fi
}
print_io_per_op() {
    [[ -n $DISK_NAME ]] || return 0
    local s j row n hz
    hz=$(getconf CLK_TCK)
    echo
    echo "Per fio operation, summed over every round: requests completed by $DISK_NAME during the fio run"
    echo "(writes, KiB written, cache flushes; /proc/diskstats) and CPU of the setup's FUSE daemon"
    echo "(utime + stime, µs). Other work on the machine counts too; compare setups, not absolutes:"
    echo
    echo "| job | setup | writes / op (a flush counts one, empty) | KiB written / op | flushes / op | daemon CPU µs / op |"
    echo "|---|---|---:|---:|---:|---:|"
    for j in "${JOBS[@]}"; do
        [[ $j == pgbench ]] && continue
        for s in "${SETUPS[@]}"; do
            n=${IO_SUM[$s,$j,ops]:-0}
            [[ $n -gt 0 ]] || continue
            row="| $j | $(setup_title "$s") |"
            row+=$(awk -v w="${IO_SUM[$s,$j,writes]:-0}" -v k="${IO_SUM[$s,$j,sectors]:-0}" -v f="${IO_SUM[$s,$j,flushes]:-0}" -v n="$n" \
                'BEGIN { printf " %.2f | %.1f | %.2f |", w / n, k / 2 / n, f / n }')
            if [[ -n ${IO_SUM[$s,$j,ticks]:-} ]]; then
                row+=$(awk -v t="${IO_SUM[$s,$j,ticks]}" -v hz="$hz" -v n="$n" 'BEGIN { printf " %.1f |", t / hz * 1e6 / n }')
            else
                row+=" - |"
            fi
            echo "$row"
        done
    done
}

run_job() {
    local setup=$1 job=$2 dir target json dirn
    if [[ $job == pgbench ]]; then run_pgbench "$setup"; return; fi
    if [[ $setup == native ]]; then dir="$DISKS"; else mount_setup "$setup"; dir="${MNT[$setup]}"; fi
    target="$dir/bench.img"
    json="$RESULTS/$setup-$job$([[ $ROUNDS -eq 1 ]] || echo "-r$ROUND").json"
    drop_caches
    log "$setup: $job"
    local t0 t1 io0 io1 cpu0 cpu1
    io0=$(disk_counters); cpu0=$(daemon_ticks "$setup")
    t0=$(date +%s.%N)
    # shellcheck disable=SC2046
    fio --name="$job" --filename="$target" --size="${SIZE_MIB}M" --ioengine=psync --direct=0 \
        --fallocate=none --output-format=json --output="$json" $(job_args "$job") \
        2>"$LOGS/fio-$setup-$job.err" \
        || { cat "$LOGS/fio-$setup-$job.err" >&2; die "fio $job failed on $setup"; }
    t1=$(date +%s.%N)
    io1=$(disk_counters); cpu1=$(daemon_ticks "$setup")
    WALL[$setup,$job]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    [[ $setup == native ]] || unmount_setup "$setup"
    remove_logs
    dirn=$(job_dir "$job")
    # fio may put warnings before the JSON document; parse from the first '{'.
    local vals ops
    vals=$(sed -n '/^{/,$p' "$json" | jq -r --arg d "$dirn" '
        if ([.jobs[].error] | add) != 0 then "ERR"
        else "\([.jobs[][$d].bw_bytes] | add) \([.jobs[][$d].iops] | add) \([.jobs[] | .read.total_ios + .write.total_ios] | add)" end') \
        || die "cannot parse $json"
    [[ $vals != ERR ]] || die "fio reported an error for $job on $setup (see $json)"
    read -r BW[$setup,$job] IOPS[$setup,$job] ops <<<"$vals"
    [[ ${BW[$setup,$job]} != 0 ]] || die "fio measured 0 bytes/s for $job on $setup (see $json)"
    note_io_per_op "$setup" "$job" "$ops" "$io0" "$io1" "$cpu0" "$cpu1"
    log "$setup: $job $(awk -v b="${BW[$setup,$job]}" 'BEGIN { printf "%.1f MB/s", b / 1e6 }')"
}

# ---------------------------------------------------------------- pgbench
# PostgreSQL in ext4 in an image file of the setup (the file itself for native, through the mount
# for the FUSE setups), attached through a loop device: every commit's WAL flush reaches the
# setup as an fsync of the image. A fresh image per run (allocated natively, then mkfs.ext4
# through the setup), a fresh cluster (initdb), pgbench -i, then the measured pgbench run.
PG_BIN=""
PG_LOOP="" PG_MOUNTED=0 PG_RUNNING=0
PG_MNT="$WORK/pg-mnt"
PG_SOCK="$WORK/pg-sock"
PG_PORT=${BENCH_PG_PORT:-5491}
pg_teardown() {
    if [[ $PG_RUNNING -eq 1 ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_MNT/data" -m fast -w stop >>"$LOGS/postgres.log" 2>&1 \
            || log "pg_ctl stop failed (see $LOGS/postgres.log)"
        PG_RUNNING=0
    fi
    if [[ $PG_MOUNTED -eq 1 ]]; then umount "$PG_MNT" || umount -l "$PG_MNT" || true; PG_MOUNTED=0; fi
    if [[ -n $PG_LOOP ]]; then losetup -d "$PG_LOOP" || log "losetup -d $PG_LOOP failed"; PG_LOOP=""; fi
}

run_pgbench() {
    local setup=$1 dir img out tps t0 t1
    rm -f "$DISKS/pg.img"
    fallocate -l "${PG_IMG_MIB}M" "$DISKS/pg.img"
    if [[ $setup == native ]]; then dir="$DISKS"; else mount_setup "$setup"; dir="${MNT[$setup]}"; fi
    img="$dir/pg.img"
    drop_caches
    log "$setup: pgbench (mkfs.ext4, initdb, pgbench -i -s $PG_SCALE)"
    mkfs.ext4 -q -F -E nodiscard "$img" >>"$LOGS/pgbench-$setup.log" 2>&1 || die "mkfs.ext4 on $img failed"
    PG_LOOP=$(losetup -f --show "$img") || die "losetup $img failed"
    mkdir -p "$PG_MNT" "$PG_SOCK"
    mount -t ext4 "$PG_LOOP" "$PG_MNT" || die "mounting $PG_LOOP ($img) failed"
    PG_MOUNTED=1
    chown postgres: "$PG_MNT" "$PG_SOCK"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_MNT/data" -A trust >>"$LOGS/pgbench-$setup.log" 2>&1 \
        || die "initdb failed (see $LOGS/pgbench-$setup.log)"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_MNT/data" -l "$PG_SOCK/postgres-$setup.log" -w \
        -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses= -c shared_buffers=128MB" start >>"$LOGS/pgbench-$setup.log" 2>&1 \
        || die "postgres did not start (see $PG_SOCK/postgres-$setup.log)"
    PG_RUNNING=1
    runuser -u postgres -- pgbench -h "$PG_SOCK" -p "$PG_PORT" -i -q -s "$PG_SCALE" postgres >>"$LOGS/pgbench-$setup.log" 2>&1 \
        || die "pgbench -i failed (see $LOGS/pgbench-$setup.log)"
    runuser -u postgres -- psql -h "$PG_SOCK" -p "$PG_PORT" -q -c CHECKPOINT postgres >>"$LOGS/pgbench-$setup.log" 2>&1 || true
    log "$setup: pgbench (measured, $RUNTIME s)"
    out="$RESULTS/$setup-pgbench$([[ $ROUNDS -eq 1 ]] || echo "-r$ROUND").txt"
    t0=$(date +%s.%N)
    runuser -u postgres -- pgbench -h "$PG_SOCK" -p "$PG_PORT" -c 4 -j 2 -T "$RUNTIME" postgres >"$out" 2>&1 \
        || { cat "$out" >&2; die "pgbench failed on $setup"; }
    t1=$(date +%s.%N)
    pg_teardown
    [[ $setup == native ]] || unmount_setup "$setup"
    rm -f "$DISKS/pg.img"
    remove_logs
    # "tps = 123.456789 (without initial connection time)"
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    [[ $tps =~ ^[0-9.]+$ ]] || die "no tps in pgbench's output on $setup (see $out)"
    BW[$setup,pgbench]=$tps; IOPS[$setup,pgbench]=$tps
    WALL[$setup,pgbench]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    log "$setup: pgbench $tps TPS"
}

# ---------------------------------------------------------------- report
mbps() { awk -v b="$1" 'BEGIN { m = b / 1e6; if (m >= 100) printf "%.0f", m; else printf "%.1f", m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
setup_title() { case "$1" in passthrough) echo passthrough_ll ;; *) echo "$1" ;; esac; }

print_table() {
    local s j row
    row="| job |"; for s in "${SETUPS[@]}"; do row+=" $(setup_title "$s") |"; done; echo "$row"
    row="|---|";  for s in "${SETUPS[@]}"; do row+="---:|"; done; echo "$row"
    for j in "${JOBS[@]}"; do
        row="| $(job_desc "$j") |"
        for s in "${SETUPS[@]}"; do
            if [[ $j == pgbench ]]; then row+=" $(awk -v t="${BW[$s,$j]}" 'BEGIN { printf "%.0f", t }') TPS"
            else row+=" $(mbps "${BW[$s,$j]}") MB/s"; fi
            if [[ $s != native ]] && has_setup native; then row+=" ($(ratio "${BW[$s,$j]}" "${BW[native,$j]}"))"; fi
            row+=" |"
        done
        echo "$row"
    done
    echo
    echo "MB/s = 10^6 bytes/s as reported by fio (bw_bytes); TPS: pgbench's transactions per second (without"
    echo "initial connection time); ratios are against native in the same run."
    echo
    echo "IOPS / wall-clock seconds of the fio run (includes the end_fsync and fio's setup; pgbench: TPS / the measured run):"
    echo
    row="| job |"; for s in "${SETUPS[@]}"; do row+=" $(setup_title "$s") |"; done; echo "$row"
    row="|---|";  for s in "${SETUPS[@]}"; do row+="---:|"; done; echo "$row"
    for j in "${JOBS[@]}"; do
        row="| $j |"
        for s in "${SETUPS[@]}"; do
            row+=" $(awk -v i="${IOPS[$s,$j]}" 'BEGIN { printf "%.0f", i }') / ${WALL[$s,$j]} s |"
        done
        echo "$row"
    done
    if has_setup replicafs && has_setup replicafs-base; then
        echo
        echo "replicafs against replicafs-base in this run (bandwidth ratio; above 1: replicafs faster):"
        echo
        echo "| job | replicafs / replicafs-base |"
        echo "|---|---:|"
        for j in "${JOBS[@]}"; do
            row="| $j | $(ratio "${BW[replicafs,$j]}" "${BW[replicafs-base,$j]}")"
            if [[ $ROUNDS -gt 1 ]]; then
                row+=" (from the medians; per round:"
                for ((r = 1; r <= ROUNDS; r++)); do
                    row+=" $(ratio "${ROUND_BW[replicafs,$j,$r]}" "${ROUND_BW[replicafs-base,$j,$r]}")"
                done
                row+=")"
            fi
            echo "$row |"
        done
    fi
}

print_device_settings() {  # what each setup's backing device held during its runs
    local s
    echo
    echo "Device settings during the runs (FUSE setups: set to read_ahead_kb $BDI_READAHEAD_KB, max_ratio $BDI_MAX_RATIO after each mount, read back; native: the disk as it is):"
    echo
    echo "| setup | backing device settings |"
    echo "|---|---|"
    for s in "${SETUPS[@]}"; do
        if [[ $s == native ]]; then echo "| native | $(native_device) |"
        else echo "| $(setup_title "$s") | ${DEVSET[$s]:-not mounted} |"; fi
    done
}

print_every_run() {  # with several rounds, every round's figure, not only the medians
    [[ $ROUNDS -gt 1 ]] || return 0
    local s j r row
    echo
    echo "Every run, MB/s (pgbench: TPS) per round in run order (the tables above show the medians):"
    echo
    row="| job |"; for s in "${SETUPS[@]}"; do row+=" $(setup_title "$s") |"; done; echo "$row"
    row="|---|";  for s in "${SETUPS[@]}"; do row+="---:|"; done; echo "$row"
    for j in "${JOBS[@]}"; do
        row="| $j |"
        for s in "${SETUPS[@]}"; do
            row+=" "
            for ((r = 1; r <= ROUNDS; r++)); do
                if [[ $j == pgbench ]]; then row+="$(awk -v t="${ROUND_BW[$s,$j,$r]}" 'BEGIN { printf "%.0f", t }')"
                else row+="$(mbps "${ROUND_BW[$s,$j,$r]}")"; fi
                [[ $r -eq $ROUNDS ]] || row+=" / "
            done
            row+=" |"
        done
        echo "$row"
    done
}

print_passthrough_ratios() {  # each ReplicaFS build against passthrough_ll in this run
    has_setup passthrough || return 0
    local s j row cols=()
    for s in replicafs-base replicafs; do has_setup "$s" && cols+=("$s"); done
    [[ ${#cols[@]} -gt 0 ]] || return 0
    echo
    echo "Against libfuse's passthrough_ll in this run (bandwidth ratio; 1.00x: as fast):"
    echo
    row="| job |"; for s in "${cols[@]}"; do row+=" $s / passthrough_ll |"; done; echo "$row"
    row="|---|"; for s in "${cols[@]}"; do row+="---:|"; done; echo "$row"
    for j in "${JOBS[@]}"; do
        row="| $j |"
        for s in "${cols[@]}"; do row+=" $(ratio "${BW[$s,$j]}" "${BW[passthrough,$j]}") |"; done
        echo "$row"
    done
}

binary_note() {  # binary -> "built DATE; tree now at git REV..." (the git tree holding the binary, else the repo's)
    local bin=$1 root built newer
    built=$(date -u -r "$bin" '+%Y-%m-%d %H:%M:%S UTC')
    root=$(git -C "$(dirname "$bin")" rev-parse --show-toplevel 2>/dev/null) || root="$REPO_ROOT"
    newer=$(find "$root/Sources" "$root/Package.swift" -newer "$bin" -type f 2>/dev/null | wc -l)
    printf 'built %s; tree %snow at git %s%s%s' "$built" \
        "$([[ $root == "$REPO_ROOT" ]] || echo "$root ")" \
        "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo '+dirty')" \
        "$([[ $newer -eq 0 ]] || echo " ($newer source files changed since the build: binary may be stale)")"
}

print_report() {
    echo "## fio through the mount vs native"
    echo
    echo "- command: \`$CMDLINE\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- kernel: $(uname -srm); CPUs: $(nproc); RAM: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- work dir: $WORK ($(df -PT "$WORK" | awk 'NR == 2 { print $2 " on " $1 }'))"
    echo "- $(fio --version); image ${SIZE_MIB} MiB, ioengine=psync, direct=0"
    [[ $ROUNDS -eq 1 ]] || echo "- $ROUNDS rounds; every figure is the median over the rounds$(has_setup replicafs-base && has_setup replicafs && echo "; replicafs-base and replicafs swap places every round")"
    has_setup replicafs-base && echo "- replicafs-base: $BASE_BIN, $(binary_note "$BASE_BIN"); default options (writeback cache on)"
    has_setup replicafs && echo "- replicafs: $REPLICAFS_BIN, $(binary_note "$REPLICAFS_BIN"); default options (writeback cache on)"
    has_setup mergerfs && echo "- mergerfs $(mergerfs --version 2>&1 | awk '{ print $NF; exit }'): -o $MERGERFS_OPTS"
    has_setup passthrough && echo "- passthrough_ll (libfuse $(pkg-config --modversion fuse3) example, gcc -O2): $PASSTHROUGH_OPTS"
    echo "- load average when the runs ended: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shares its CPUs and disk)"
    echo
    print_table
    print_every_run
    print_passthrough_ratios
    print_io_per_op
    print_device_settings
}

# ---------------------------------------------------------------- main
mkdir -p "$DISKS" "$RESULTS" "$LOGS"
rm -f "$RESULTS"/*.json "$LOGS"/*.log "$LOGS"/*.err
for s in "${FUSE_SETUPS[@]}"; do
    if is_mounted "${MNT[$s]}"; then log "stale mount on ${MNT[$s]}; unmounting"; fi
done
ensure_packages
has_setup replicafs && ensure_replicafs
# Clean stale mounts from an interrupted run (needs REPLICAFS_BIN for replicafs).
for s in "${FUSE_SETUPS[@]}"; do unmount_setup "$s"; done
has_setup passthrough && build_passthrough
if [[ " ${JOBS[*]} " == *" pgbench "* ]]; then
    PG_BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
    id postgres >/dev/null 2>&1 || die "no postgres user (is postgresql installed?)"
fi

# The whole disk under the work dir (a partition's counters are kept for its disk too).
DISKS_DEVICE=$(df -P "$DISKS" | awk 'NR == 2 { print $1 }')
DISK_NAME=$(lsblk -no PKNAME "$DISKS_DEVICE" 2>/dev/null | head -1)
[[ -n $DISK_NAME ]] || DISK_NAME=$(basename "$DISKS_DEVICE")
grep -qw "$DISK_NAME" /proc/diskstats 2>/dev/null || DISK_NAME=""

log "writing ${SIZE_MIB} MiB of random data to $IMG"
remove_logs
rm -f "$IMG"
dd if=/dev/urandom of="$IMG" bs=1M count="$SIZE_MIB" conv=fsync status=none
sync

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start=$SECONDS
FIRST_ORDER=("${SETUPS[@]}")
SWAP_BUILDS=0
if has_setup replicafs && has_setup replicafs-base; then SWAP_BUILDS=1; fi
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    if [[ $ROUNDS -gt 1 ]]; then
        log "round $ROUND of $ROUNDS"
        SETUPS=()
        for s in "${FIRST_ORDER[@]}"; do  # even rounds: replicafs-base and replicafs swap places
            if [[ $SWAP_BUILDS -eq 1 && $((ROUND % 2)) -eq 0 && $s == replicafs ]]; then SETUPS+=(replicafs-base)
            elif [[ $SWAP_BUILDS -eq 1 && $((ROUND % 2)) -eq 0 && $s == replicafs-base ]]; then SETUPS+=(replicafs)
            else SETUPS+=("$s"); fi
        done
    fi
    for j in "${JOBS[@]}"; do
        if [[ $j == seqread ]]; then
            # On this VM the first cold buffered read of the file after the random writes runs 2-4x
            # slower than later ones (guest-side; a direct-I/O read does not remove the effect), which
            # would always penalise the first setup. One unmeasured buffered read evens that out.
            log "warm-up read of $IMG (not measured)"
            drop_caches
            dd if="$IMG" of=/dev/null bs=1M status=none
        fi
        for s in "${SETUPS[@]}"; do
            run_job "$s" "$j"
            ROUND_BW[$s,$j,$ROUND]=${BW[$s,$j]}; ROUND_IOPS[$s,$j,$ROUND]=${IOPS[$s,$j]}; ROUND_WALL[$s,$j,$ROUND]=${WALL[$s,$j]}
        done
    done
done
SETUPS=("${FIRST_ORDER[@]}")
if [[ $ROUNDS -gt 1 ]]; then  # the tables show each setup's median over the rounds
    for s in "${SETUPS[@]}"; do
        for j in "${JOBS[@]}"; do
            _bw=(); _iops=(); _wall=()
            for ((r = 1; r <= ROUNDS; r++)); do
                _bw+=("${ROUND_BW[$s,$j,$r]}"); _iops+=("${ROUND_IOPS[$s,$j,$r]}"); _wall+=("${ROUND_WALL[$s,$j,$r]}")
            done
            BW[$s,$j]=$(median "${_bw[@]}"); IOPS[$s,$j]=$(median "${_iops[@]}"); WALL[$s,$j]=$(median "${_wall[@]}")
        done
    done
fi
log "all runs done in $((SECONDS - start)) s"

report="$(print_report)"
echo
echo "$report"
if [[ -n "$OUT" ]]; then
    printf '%s\n' "$report" >"$OUT"
    log "report written to $OUT"
fi
