#!/usr/bin/env bash
# Tools/bench-net-cpu.sh - what shipping to a receiver costs in CPU, a figure the machine's load
# does not blur the way it blurs throughput: `replicafs serve` (mutual TLS, loopback) and one
# mount daemon, 5 VMs protected continuously (3 to serve, 2 to a directory store), 600 MiB
# disks. Prints the CPU seconds (utime + stime of both processes, /proc) and the receiver's
# request count (/v1/stats) over 10 s idle, then for 256 MiB of random data written (dd, fsync)
# to one VM of each kind: the time until shipped and the CPU seconds it took.
#
# Usage: sudo Tools/bench-net-cpu.sh [BINARY]   (default .build/debug/replicafs)
# Environment: BENCH_DIR (default /var/tmp/replicafs-bench-net-cpu), REPLICAFS_RUN_DIR.
set -eu
cd "$(dirname "$0")/.."
RFS=${1:-$PWD/.build/debug/replicafs}
[ -x "$RFS" ] || { echo "bench-net-cpu.sh: no replicafs binary at $RFS" >&2; exit 2; }
W=${BENCH_DIR:-/var/tmp/replicafs-bench-net-cpu}
SERVE_PID=""
cleanup() { mountpoint -q "$W/mnt" && { "$RFS" unmount "$W/mnt" >/dev/null 2>&1 || umount -l "$W/mnt"; }; [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; true; }
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W/disks" "$W/mnt" "$W/local" "$W/store"
"$RFS" certs init --name localhost --pki "$W/pki" >/dev/null
out=$("$RFS" serve --store "$W/store" --listen 127.0.0.1:0 --pki "$W/pki")
PORT=$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' <<<"$out"); SERVE_PID=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
for vm in n1 n2 n3 l1 l2; do truncate -s 600M "$W/disks/$vm.img"; done
out=$("$RFS" mount "$W/disks" "$W/mnt"); MOUNT_PID=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
for vm in n1 n2 n3; do "$RFS" protect $vm --disks-dir "$W/disks" --disk $vm.img --target "replicafs://localhost:$PORT" --pki "$W/pki" --copy-frequency continuous >/dev/null; done
for vm in l1 l2; do "$RFS" protect $vm --disks-dir "$W/disks" --disk $vm.img --target "$W/local" --copy-frequency continuous >/dev/null; done
for vm in n1 n2 n3 l1 l2; do for _ in $(seq 1 600); do { "$RFS" status "$W/mnt" || true; } | grep -q "VM $vm: protected" && break; sleep 0.1; done; done
sleep 2
ticks=$(getconf CLK_TCK)
cpu() { local t=0; for p in $SERVE_PID $MOUNT_PID; do t=$(( t + $(awk '{print $14+$15}' /proc/$p/stat) )); done; echo $t; }
reqs() { curl -sf --cacert "$W/pki/ca.pem" --cert "$W/pki/cert.pem" --key "$W/pki/key.pem" "https://localhost:$PORT/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
r0=$(reqs); c0=$(cpu); sleep 10; c1=$(cpu); r1=$(reqs)
echo "idle 10 s, 5 VMs (3 to serve): cpu $(python3 -c "print(f'{($c1-$c0)/$ticks:.2f}')") s, receiver requests $((r1 - r0 - 1)); load $(cut -d' ' -f1-3 /proc/loadavg)"
shipped() { { "$RFS" status "$W/mnt" --json || true; } | python3 -c "import json,sys; print([v for m in json.load(sys.stdin) for v in m['vms'] if v['vm']=='$1'][0]['logBytesShipped'])"; }
head -c $((256<<20)) /dev/urandom > "$W/random.bin"
for vm in n1 l1; do
  s0=$(shipped $vm); c0=$(cpu); t0=$(date +%s.%N)
  dd if="$W/random.bin" of="$W/mnt/$vm.img" bs=1M conv=notrunc,fsync status=none
  while [ $(( $(shipped $vm) - s0 )) -lt $((256<<20)) ]; do sleep 0.05; done
  t1=$(date +%s.%N); c1=$(cpu)
  echo "$vm: 256 MiB written and shipped in $(python3 -c "print(f'{$t1-$t0:.2f}')") s; cpu of serve + mount daemon $(python3 -c "print(f'{($c1-$c0)/$ticks:.2f}')") s; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
