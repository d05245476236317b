#!/usr/bin/env bash
# Regenerates the committed man page docs/man/replicafs.1 with swift-argument-parser's
# generate-manual plugin (offline: it builds the package in debug mode and reads the command
# tree from `replicafs --experimental-dump-help`). Run it after changing a command, an option
# or a help text; ManPageTests fails while the committed page misses one.
#
#   Tools/gen-man.sh [--configuration debug|release]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
config=debug
case ${1:-} in
  --configuration) config=${2:?--configuration needs debug or release} ;;
  "") ;;
  *) echo "gen-man.sh: unknown argument '$1'" >&2; exit 1 ;;
esac
export PATH="/opt/swift/usr/bin:$PATH"
cd "$here"
out=$(swift package plugin generate-manual --configuration "$config" 2>&1) || { echo "$out" >&2; exit 1; }
# The plugin prints "Generated manual in '<dir>'"; the page is <dir>/replicafs.1.
dir=$(printf '%s\n' "$out" | sed -n "s/^Generated manual in '\(.*\)'\$/\1/p" | tail -1)
dir=${dir#file://}
[ -n "$dir" ] && [ -f "$dir/replicafs.1" ] || { echo "$out" >&2; echo "gen-man.sh: the plugin wrote no replicafs.1" >&2; exit 1; }
mkdir -p docs/man
# The page carries the day it was generated: keep the committed one when only that changed.
if [ -f docs/man/replicafs.1 ] && diff -q <(grep -v '^\.Dd ' "$dir/replicafs.1") <(grep -v '^\.Dd ' docs/man/replicafs.1) >/dev/null; then
  echo "docs/man/replicafs.1 is current"
else
  cp "$dir/replicafs.1" docs/man/replicafs.1
  echo "wrote docs/man/replicafs.1"
fi
