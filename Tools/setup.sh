#!/usr/bin/env bash
# Installs what ReplicaFS needs on a fresh Debian 12 machine (as root): libfuse3, zlib,
# the real tools the tests and the demo drive (fio, e2fsprogs, sqlite3, util-linux; tmux for
# the progress bar in a real terminal, curl for the metrics endpoint), and a single-node Ceph
# (monitor, manager, OSD, radosgw) for the object-store tests (Tools/ceph.sh); gdb, so a test
# that finds a daemon hung can print where its threads wait.
set -euo pipefail
packages=(libfuse3-dev fuse3 zlib1g-dev pkg-config fio e2fsprogs sqlite3 util-linux python3 rsync tmux curl
          ceph-mon ceph-mgr ceph-osd radosgw ceph-common uuid-runtime gdb)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${CI:-}" = "true" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || { echo "setup: /dev/fuse is missing: load the fuse module" >&2; exit 1; }
export PATH="/opt/swift/usr/bin:$PATH"
command -v swift >/dev/null || { echo "setup: swift not found (expected at /opt/swift)" >&2; exit 1; }
