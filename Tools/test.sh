#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test on real FUSE mounts.
# Run as root (mounts, loop devices, drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
source Tools/setup.sh
export PATH="/opt/swift/usr/bin:$PATH"
# Bounded: every test has its own time limit (Swift Testing's .timeLimit on each suite) and the
# whole run has one, so a hung FUSE request fails CI with a message instead of hanging it.
timeout --kill-after=60 45m swift build --build-tests \
  || { rc=$?; [ $rc -ne 124 ] || echo "test.sh: the build ran past 45 minutes" >&2; exit $rc; }
# The daemons the tests start register in a run directory of their own, so the host's own
# mounts (and records left by an earlier run) never show in the tests' `status`.
export REPLICAFS_RUN_DIR="${REPLICAFS_RUN_DIR:-$(mktemp -d /tmp/replicafs-test-run.XXXXXX)}"
# The fuzz targets (docs/fuzzing.md) build beside the tests, one compile job at a time, in
# their own scratch path; each then runs 20 s from its committed seed corpus after the tests.
fuzz_log=$(mktemp /tmp/replicafs-fuzz-build.XXXXXX)
nice -n 19 timeout --kill-after=60 30m Tools/fuzz.sh --build-only --build-jobs 1 >"$fuzz_log" 2>&1 & fuzz_build=$!
# Whatever way the run ends: the fuzz build stops, the Ceph cluster's own daemons stop.
ceph_dir="$(mktemp -d /tmp/replicafs-test-ceph.XXXXXX)"
trap 'kill $fuzz_build 2>/dev/null || true; Tools/ceph.sh stop --dir "$ceph_dir" || true' EXIT
# Failovers the tests run record their events here, not in the host's /var/lib/replicafs/events.
export REPLICAFS_EVENT_DIR="${REPLICAFS_EVENT_DIR:-$(mktemp -d /tmp/replicafs-test-events.XXXXXX)}"
# The object-store tests run against a real Ceph RGW: a throwaway cluster for this run, stopped
# (its own daemons, its directory) however the run ends. The tests read its endpoint and keys
# from REPLICAFS_S3_ENV; under CI a test that needs it and finds none fails.
if Tools/ceph.sh start --dir "$ceph_dir"; then
  export REPLICAFS_S3_ENV="$ceph_dir/env" REPLICAFS_CEPH_DIR="$ceph_dir"
else
  echo "test.sh: Ceph did not start; the object-store tests will fail" >&2
fi
# Mount tests share the machine's FUSE and loop devices: run them one at a time.
timeout --kill-after=60 30m swift test --skip-build --no-parallel \
  || { rc=$?; [ $rc -ne 124 ] || echo "test.sh: the tests ran past 30 minutes" >&2; exit $rc; }
# The network-namespace tests move threads into namespaces of their own: they run in a test
# process of their own, after the others.
REPLICAFS_NETNS_TESTS=1 timeout --kill-after=30 10m swift test --skip-build --no-parallel --filter NamespaceTLSTests \
  || { rc=$?; [ $rc -ne 124 ] || echo "test.sh: the namespace tests ran past 10 minutes" >&2; exit $rc; }
wait $fuzz_build || { cat "$fuzz_log" >&2; echo "test.sh: building the fuzz targets failed" >&2; exit 1; }
timeout --kill-after=30 5m Tools/fuzz.sh --seconds 20 \
  || { rc=$?; [ $rc -ne 124 ] || echo "test.sh: fuzzing ran past 5 minutes" >&2; exit $rc; }
