#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test on real FUSE mounts.
# Run as root (mounts, loop devices, drop_caches).
set -euo pipefail
cd "$(dirname "$0")/.."
source Tools/setup.sh
export PATH="/opt/swift/usr/bin:$PATH"
swift build --build-tests
# Mount tests share the machine's FUSE and loop devices: run them one at a time.
swift test --skip-build --no-parallel
