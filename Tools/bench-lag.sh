#!/usr/bin/env bash
# Tools/bench-lag.sh - replication lag across two hosts with a round trip between them, against
# the same run with no added delay, side by side:
#   hosts: network namespaces from Tools/netns.sh (a: 10.77.0.1, the protected mount; b:
#   10.77.0.2, `replicafs serve` on :8084). The sender dials Tools/delay-proxy.py in b on
#   10.77.0.2:8085, which forwards to the receiver after RTT/2 ms each way (netem's stand-in:
#   this kernel has none; the proxy is a propagation delay, not a bandwidth cap). The baseline
#   run goes through the same proxy at 0 ms, so only the delay differs; with --direct a third
#   run dials the receiver itself (no proxy), to show what the proxy costs.
#   load: fio randwrite 64 KiB at --rate for --seconds through the mount, continuous copy
#   frequency (the shortest the policy allows), mutual TLS.
#   lag: `status --json` recentLags (per cycle: commit time minus the previous cycle's cut, the
#   oldest write the new point covers), p50 / p99 / max, as Tools/bench-replication.sh reads it.
# Rounds alternate which delay goes first. Prints a markdown table (appended to --out FILE).
#
# Usage: sudo Tools/bench-lag.sh [--rtt-ms 10] [--rate 50m] [--seconds 60] [--rounds 1] [--disk-mib 512] [--direct] [--out FILE]
# Environment: REPLICAFS_BIN (default .build/debug/replicafs), BENCH_DIR (default
#              /var/tmp/replicafs-bench-lag, must not be tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
RTT=10 RATE=50m SECS=60 ROUNDS=1 DISK=512 OUT="" DIRECT=0
usage() { echo "usage: $0 [--rtt-ms N] [--rate 50m] [--seconds N] [--rounds N] [--disk-mib N] [--out FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rtt-ms) [ $# -ge 2 ] || usage; RTT=$2; shift 2;;
    --rate) [ $# -ge 2 ] || usage; RATE=$2; shift 2;;
    --seconds) [ $# -ge 2 ] || usage; SECS=$2; shift 2;;
    --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2;;
    --disk-mib) [ $# -ge 2 ] || usage; DISK=$2; shift 2;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2;;
    --direct) DIRECT=1; shift;;
    *) usage;;
  esac
done
for v in "$RTT" "$SECS" "$ROUNDS" "$DISK"; do [[ $v =~ ^[0-9]+$ ]] || { echo "bench-lag.sh: '$v' is not a whole number" >&2; exit 2; }; done
[[ $RATE =~ ^[1-9][0-9]*[kmg]?$ ]] || { echo "bench-lag.sh: --rate '$RATE' is not a fio rate (50m)" >&2; exit 2; }
CMDLINE="Tools/bench-lag.sh --rtt-ms $RTT --rate $RATE --seconds $SECS --rounds $ROUNDS --disk-mib $DISK$([ $DIRECT = 1 ] && echo ' --direct' || true)"
RFS=${REPLICAFS_BIN:-$PWD/.build/debug/replicafs}
[ -x "$RFS" ] || { echo "bench-lag.sh: no replicafs binary at $RFS (swift build, or set REPLICAFS_BIN)" >&2; exit 2; }
W=${BENCH_DIR:-/var/tmp/replicafs-bench-lag}
P=rfslag$$
A=10.77.0.1 B=10.77.0.2
SERVE_PID="" PROXY_PID=""
on() { local h=$1; shift; REPLICAFS_RUN_DIR="$W/run-$h" REPLICAFS_STATE_DIR="$W/run-$h/state" nsenter --net="/var/run/netns/$P-$h" "$@"; }
# status_json FILE: `status --json` of the mount into FILE. status exits with the worst health
# (1 Warning, 2 Critical), which a VM behind under load is: under set -e that ended the script
# silently; only a status above 2 (no answer) is an error here.
status_json() { local rc=0; on a "$RFS" status "$W/mnt" --json >"$1" || rc=$?; [ $rc -le 2 ] || { echo "bench-lag.sh: status failed ($rc)" >&2; exit 1; }; }
stop_run() {
  mountpoint -q "$W/mnt" 2>/dev/null && { on a "$RFS" unmount "$W/mnt" >/dev/null 2>&1 || umount -l "$W/mnt"; }
  for pid in $PROXY_PID $SERVE_PID; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  done
  SERVE_PID="" PROXY_PID=""
}
cleanup() { stop_run; Tools/netns.sh down "$P" || true; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

Tools/netns.sh up "$P" >/dev/null
RESULTS=$(mktemp -d /tmp/bench-lag.XXXXXX)

# measure NAME DELAY_MS|direct: one whole run from a fresh work dir; figures to $RESULTS/NAME.json.
measure() {
  local name=$1 delay=$2 out
  rm -rf "$W" && mkdir -p "$W/disks" "$W/mnt" "$W/store" "$W/run-a/state" "$W/run-b/state"
  "$RFS" certs init --name "$A" --pki "$W/pki-a" >/dev/null
  "$RFS" certs issue "$B" --out "$W/pki-b" --pki "$W/pki-a" >/dev/null
  out=$(on b "$RFS" serve --store "$W/store" --listen "$B:8084" --pki "$W/pki-b")
  SERVE_PID=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
  [ -n "$SERVE_PID" ] || { echo "bench-lag.sh: serve did not start: $out" >&2; exit 1; }
  local port=8085
  if [ "$delay" = direct ]; then
    port=8084 delay=-1
  else
    ip netns exec "$P-b" /usr/bin/python3 Tools/delay-proxy.py --listen "$B:8085" --to "$B:8084" --delay-ms "$delay" >"$W/proxy.log" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 1 100); do grep -q listening "$W/proxy.log" && break; sleep 0.1; done
    grep -q listening "$W/proxy.log" || { echo "bench-lag.sh: delay-proxy did not start: $(cat "$W/proxy.log")" >&2; exit 1; }
  fi
  # The round trip a sees to the receiver through the proxy: the TLS handshake (one round trip).
  local hs
  hs=$(on a curl -sf -o /dev/null -w '%{time_appconnect}' --cacert "$W/pki-a/ca.pem" --cert "$W/pki-a/cert.pem" \
    --key "$W/pki-a/key.pem" "https://$B:$port/v1/stats")
  truncate -s "${DISK}M" "$W/disks/vm.img"
  on a "$RFS" mount "$W/disks" "$W/mnt" >/dev/null
  on a "$RFS" protect lag --disks-dir "$W/disks" --disk vm.img --target "replicafs://$B:$port" --pki "$W/pki-a" \
    --copy-frequency continuous >/dev/null
  for _ in $(seq 1 1200); do { on a "$RFS" status "$W/mnt" || true; } | grep -q "VM lag: protected" && break; sleep 0.1; done
  { on a "$RFS" status "$W/mnt" || true; } | grep -q "VM lag: protected" || { echo "bench-lag.sh: VM lag not protected" >&2; on a "$RFS" status "$W/mnt" >&2; exit 1; }
  status_json "$W/status0.json"
  log "$name: $([ "$delay" -ge 0 ] && echo "${delay} ms each way" || echo "no proxy"), fio randwrite 64k --rate $RATE for $SECS s"
  local load0 load1
  load0=$(cut -d' ' -f1 /proc/loadavg)
  fio --name=load --filename="$W/mnt/vm.img" --rw=randwrite --bs=64k --size="${DISK}M" --rate="$RATE" \
    --ioengine=psync --time_based --runtime="$SECS" --output-format=json >"$W/load.json"
  load1=$(cut -d' ' -f1 /proc/loadavg)
  sleep 3
  status_json "$W/status.json"
  python3 - "$W/status0.json" "$W/status.json" "$W/load.json" "$delay" "$hs" "$load0 / $load1" >"$RESULTS/$name.json" <<'PY'
import json, sys
vm = lambda f: [v for m in json.load(open(f)) for v in m.get("vms", []) if v["vm"] == "lag"][0]
before, after = vm(sys.argv[1]), vm(sys.argv[2])
lags = sorted(after["recentLags"][len(before["recentLags"]):])  # the cycles under load only
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else float("nan")
load = json.load(open(sys.argv[3]))["jobs"][0]["write"]["bw_bytes"] / 1e6
shipped = (after["logBytesShipped"] - before["logBytesShipped"]) / 1e6
print(json.dumps({"delay": float(sys.argv[4]), "handshake": float(sys.argv[5]), "loadavg": sys.argv[6], "fio": load,
                  "cycles": len(lags), "p50": pick(0.5), "p99": pick(0.99), "max": lags[-1] if lags else float("nan"),
                  "mean": sum(lags) / len(lags) if lags else float("nan"), "shipped": shipped,
                  "pending": after.get("pendingBytes", 0) / 1e6}))
PY
  stop_run
}

names=()
for ((r = 1; r <= ROUNDS; r++)); do
  if [ $((r % 2)) -eq 1 ]; then order="0 $((RTT / 2))"; else order="$((RTT / 2)) 0"; fi
  for d in $order; do
    measure "r$r-d$d" "$d"; names+=("r$r-d$d")
  done
  if [ $DIRECT = 1 ]; then measure "r$r-direct" direct; names+=("r$r-direct"); fi
done

TABLE=$(python3 - "$RESULTS" "${names[@]}" <<'PY'
import json, sys
d, names = sys.argv[1], sys.argv[2:]
runs = [(n, json.load(open(f"{d}/{n}.json"))) for n in names]
print("| measure | " + " | ".join(f"round {n.split('-')[0][1:]}, " + (f"{2 * f['delay']:g} ms round trip" if f["delay"] >= 0 else "no proxy") for n, f in runs) + " |")
print("|---|" + "---|" * len(runs))
rows = [("added delay each way (delay-proxy.py)", lambda f: f"{f['delay']:g} ms" if f["delay"] >= 0 else "- (dials serve)"),
        ("TLS handshake a -> (proxy) -> serve (curl time_appconnect, one round trip + crypto)", lambda f: f"{f['handshake'] * 1000:.1f} ms"),
        ("sustained write load through the mount (fio randwrite 64 KiB)", lambda f: f"{f['fio']:.1f} MB/s"),
        ("log bytes shipped during the load + 3 s", lambda f: f"{f['shipped']:.0f} MB"),
        ("replication cycles under load", lambda f: f"{f['cycles']}"),
        ("lag, write to committed point: p50", lambda f: f"{f['p50']:.2f} s"),
        ("lag, write to committed point: p99", lambda f: f"{f['p99']:.2f} s"),
        ("lag: max / mean", lambda f: f"{f['max']:.2f} s / {f['mean']:.2f} s"),
        ("pending log bytes at the end", lambda f: f"{f['pending']:.1f} MB"),
        ("load average at fio start / end (2 cores, shared)", lambda f: f["loadavg"])]
for label, fmt in rows:
    print(f"| {label} | " + " | ".join(fmt(f) for _, f in runs) + " |")
PY
)
rm -rf "$RESULTS"
{
  echo "#### bench-lag.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
  echo
  echo "\`$CMDLINE\` with $RFS ($("$RFS" --version 2>/dev/null | head -1))"
  echo
  echo "$TABLE"
  echo
} | tee ${OUT:+-a "$OUT"}
