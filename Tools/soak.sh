#!/usr/bin/env bash
# Crash soak (docs/soak.md): kill -9 of the mount daemon at random moments under a write load,
# restart, verify. Run as root.
#   Tools/soak.sh [--rounds N] [--seed S] [--disk-mib M] [--keep]
# A writer (Tools/soak-stamps.py) writes stamped 4 KiB blocks through the mount and fdatasyncs
# each, journaling what was acknowledged. Each round: the writer runs, the daemon is killed at a
# random moment (0.2-3 s in; replication passes every 5 s, so kills land in them too), the
# writer stops at its first error, the mount is started again, and then
#   - every acknowledged write is on the image (read through the new mount),
#   - a new point (snapshot) exports equal to the image, so the writes reach the replica,
#   - every earlier point still exports to the sha256 recorded when it was first seen.
# Ends with "soak: rounds=N lost-acknowledged-writes=L damaged-points=D ..." and exits non-zero
# on any loss or damage.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=10 seed=$(( (RANDOM << 15) | RANDOM )) mib=32 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --disk-mib) mib="${2:?--disk-mib needs a number}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$rounds" "$seed" "$mib"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "soak.sh: '$v' is not a whole number" >&2; exit 2; }
done
[ "$mib" -ge 16 ] || { echo "soak.sh: --disk-mib must be at least 16" >&2; exit 2; }
export PATH="/opt/swift/usr/bin:$PATH"
RFS="${REPLICAFS_BIN:-$PWD/.build/debug/replicafs}"
[ -x "$RFS" ] || { echo "soak.sh: $RFS not built (swift build)" >&2; exit 2; }
STAMPS="$PWD/Tools/soak-stamps.py"
RANDOM=$((seed % 32768))
echo "soak: seed $seed (re-run with --seed $seed), $rounds rounds, a $mib MiB disk"

SITE=$(mktemp -d /var/tmp/replicafs-soak-XXXXXX)
DISKS="$SITE/disks" MNT="$SITE/mnt" STORE="$SITE/store" JOURNAL="$SITE/journal"
mkdir -p "$DISKS" "$MNT" "$STORE" && touch "$JOURNAL"
# A copy of the binary: a rebuild during the run must not replace it under the restarts.
cp "$RFS" "$SITE/replicafs" && RFS="$SITE/replicafs"
# The daemon registers in a run directory of its own: other daemons on the host stay apart.
export REPLICAFS_RUN_DIR="${REPLICAFS_RUN_DIR:-$SITE/run}"
mkdir -p "$REPLICAFS_RUN_DIR"
writer=""
cleanup() {
  touch "$JOURNAL.stop"
  [ -z "$writer" ] || { kill "$writer" 2>/dev/null || true; wait "$writer" 2>/dev/null || true; }
  if grep -q " $MNT " /proc/mounts; then "$RFS" unmount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" || true; fi
  [ "$keep" -eq 1 ] && echo "soak: kept $SITE" || rm -rf "$SITE"
}
trap cleanup EXIT
trap "exit 143" INT TERM

blocks=4096 # the writer's region: the first 16 MiB
truncate -s "${mib}M" "$DISKS/soak.img"
"$RFS" mount "$DISKS" "$MNT" >/dev/null
"$RFS" protect soak --disks-dir "$DISKS" --disk soak.img --target "$STORE" --copy-frequency 5s \
  --retention 1000h --resync-window always >/dev/null

wait_protected() {
  for _ in $(seq 1 600); do
    "$RFS" status "$MNT" 2>/dev/null | grep -q "VM soak: protected" && return 0
    sleep 0.1
  done
  echo "soak: VM not protected 60 s after the mount:" >&2
  "$RFS" status "$MNT" >&2 || true
  return 1
}
daemon_pid() { "$RFS" status "$MNT" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])'; }
export_point() { rm -f "$2"; "$RFS" export soak --target "$STORE" --point "$1" --disk soak.img --to "$2" >/dev/null; }
sha() { sha256sum < "$1" | cut -c1-64; }
lap() { local now; now=$(date +%s.%N); timings+=" $1=$(printf '%.1f' "$(echo "$now - $lap_at" | bc)")s"; lap_at=$now; }

declare -A point_sha
previous_point=""
lost_total=0 damaged=0 torn_total=0 seq=1 kills=0 rechecked=0
# Each round records the sha256 of its own point. Every fourth round also records one point
# the daemon cut on its own (under the writes) and exports two recorded points again: the
# previous round's and one at random. At the end: every recorded point (at most 20: the
# oldest and 19 at random).
check_points() {
  local ids id fresh=() now picked=()
  [ "${1:-}" = all ] || [ $((round % 4)) -eq 0 ] || return 0
  ids=$("$RFS" points soak --target "$STORE" --json | python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))')
  for id in $ids; do [ -n "${point_sha[$id]:-}" ] || fresh+=("$id"); done
  if [ ${#fresh[@]} -gt 0 ]; then
    id=${fresh[$((RANDOM % ${#fresh[@]}))]}
    export_point "$id" "$SITE/point"; point_sha[$id]=$(sha "$SITE/point")
  fi
  local recorded=("${!point_sha[@]}")
  if [ "${1:-}" = all ] && [ ${#recorded[@]} -le 20 ]; then picked=("${recorded[@]}")
  elif [ "${1:-}" = all ]; then # the end of a long run: the oldest point and 19 at random
    picked=("$(printf '%s\n' "${recorded[@]}" | sort -n | head -1)")
    while read -r id; do picked+=("$id"); done < <(printf '%s\n' "${recorded[@]}" | shuf -n 19 --random-source=<(yes "$seed"))
  else picked=("${previous_point:-}" "${recorded[$((RANDOM % ${#recorded[@]}))]}")
  fi
  for id in "${picked[@]}"; do
    [ -n "$id" ] || continue
    export_point "$id" "$SITE/point"; now=$(sha "$SITE/point"); rechecked=$((rechecked + 1))
    if [ "$now" != "${point_sha[$id]}" ]; then
      damaged=$((damaged + 1)); echo "soak: DAMAGED point $id: sha256 $now, recorded ${point_sha[$id]}" >&2
    fi
  done
}

wait_protected
started=$(date +%s)
for round in $(seq 1 "$rounds"); do
  rm -f "$JOURNAL.stop"
  timings="" lap_at=$(date +%s.%N)
  pid=$(daemon_pid)
  python3 "$STAMPS" write "$MNT/soak.img" "$JOURNAL" --first-seq "$seq" --blocks "$blocks" --seed "$((seed + round))" &
  writer=$!
  # The random moment counts from the writer's first write (python starts slowly under load).
  before=$(wc -l < "$JOURNAL" 2>/dev/null || echo 0)
  for _ in $(seq 1 200); do [ "$(wc -l < "$JOURNAL" 2>/dev/null || echo 0)" -gt "$before" ] && break; sleep 0.05; done
  sleep "$((RANDOM % 3)).$((RANDOM % 10))"; sleep 0.2
  kill -9 "$pid"; kills=$((kills + 1))
  # The writer stops at its first failed write on the dead mount (or at the stop file).
  for _ in $(seq 1 100); do kill -0 "$writer" 2>/dev/null || break; sleep 0.1; done
  touch "$JOURNAL.stop"; wait "$writer" || true; writer=""
  lap write
  seq=$(( $(grep -c '^W ' "$JOURNAL" || true) + 1 ))
  "$RFS" mount "$DISKS" "$MNT" >/dev/null 2>"$SITE/mount.err" || { cat "$SITE/mount.err" >&2; exit 1; }
  wait_protected
  lap remount
  # Every acknowledged write is on the image.
  res=$(python3 "$STAMPS" check "$MNT/soak.img" "$JOURNAL" --blocks "$blocks") || true
  lost=$(sed -n 's/^lost=\([0-9]*\).*/\1/p' <<<"$res"); torn=$(sed -n 's/.*inflight-torn=\([0-9]*\).*/\1/p' <<<"$res")
  [ -n "$lost" ] || { echo "soak: the check failed: $res" >&2; exit 1; }
  lost_total=$((lost_total + lost)); torn_total=$((torn_total + torn))
  [ "$lost" -eq 0 ] || echo "soak: round $round: $res" >&2
  lap check
  # ... and reaches the next point.
  image_sha=$(sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' <<<"$res")
  last_point=$("$RFS" snapshot soak --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  export_point "$last_point" "$SITE/point"
  point_sha[$last_point]=$(sha "$SITE/point")
  if [ "${point_sha[$last_point]}" != "$image_sha" ]; then
    damaged=$((damaged + 1)); echo "soak: round $round: point $last_point differs from the image" >&2
  fi
  lap snapshot
  check_points
  lap points
  previous_point=$last_point
  printf 'soak: round %d/%d: %s, point %d, %d points recorded, %d s\n' "$round" "$rounds" "${res%%$'\n'*}" "$last_point" "${#point_sha[@]}" $(( $(date +%s) - started ))
  echo "soak: round $round timings:$timings"
done
check_points all
echo "soak: rounds=$rounds kills=$kills acknowledged-writes=$(grep -c '^A ' "$JOURNAL" || true) lost-acknowledged-writes=$lost_total damaged-points=$damaged points=${#point_sha[@]} point-rechecks=$rechecked inflight-torn=$torn_total seconds=$(( $(date +%s) - started ))"
[ "$lost_total" -eq 0 ] && [ "$damaged" -eq 0 ]
