#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the parsers that take outside input:
# the HRL scanner and applier, the store's acceptance of shipped logs, the control protocol's
# decoder and the recovery plan parser (docs/fuzzing.md).
#   Tools/fuzz.sh [--seconds N] [--target T]... [--jobs J] [--build-only] [--build-jobs B] [--optimize]
# Each target runs N seconds (default 60) from its committed seed corpus (Tools/fuzz/corpus/T)
# plus what earlier runs found (.build-fuzz/corpus/T, not in git). A crash, a broken invariant,
# a leak or an input slower than 10 s stops the target, leaves the input in .build-fuzz/artifacts/T
# and makes the script exit non-zero. With --jobs J each target runs J processes at once;
# --build-jobs B limits the build to B compile jobs (the test command builds beside the tests).
# --optimize builds with -O (still with the fuzzer and AddressSanitizer) in its own scratch path,
# .build-fuzz-opt (corpus, artifacts and logs there too), for long runs; the quick debug build
# the test command uses stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
# Swift's own crash backtracer would read the stack under AddressSanitizer and trip it.
export SWIFT_BACKTRACE=enable=no

all=(hrl-scan hrl-apply store-commit control-decode plan-parse)
seconds=60 jobs=1 build_only=0 build_jobs=() targets=() optimize=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --target) targets+=("${2:?--target needs a name: ${all[*]}}"); shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --build-jobs) build_jobs=(-j "${2:?--build-jobs needs a number}"); shift 2 ;;
    --optimize) optimize=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds must be a whole number, not '$seconds'" >&2; exit 2; }
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --jobs must be a positive number, not '$jobs'" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

product() {
  case "$1" in
    hrl-scan) echo FuzzHRLScan ;; hrl-apply) echo FuzzHRLApply ;; store-commit) echo FuzzStoreCommit ;;
    control-decode) echo FuzzControlDecode ;; plan-parse) echo FuzzPlanParse ;;
    *) echo "fuzz.sh: unknown target '$1' (known: ${all[*]})" >&2; return 2 ;;
  esac
}

scratch=.build-fuzz opt=()
[ "$optimize" -eq 0 ] || { scratch=.build-fuzz-opt; opt=(-Xswiftc -O); }
# The fuzz targets exist in the manifest only with REPLICAFS_FUZZ=1; the manifest cache stays in
# the fuzz scratch path so the ordinary build never sees them.
build=(env REPLICAFS_FUZZ=1 swift build -c debug --scratch-path "$scratch" --manifest-cache local
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library "${opt[@]}")
for t in "${targets[@]}"; do
  p=$(product "$t")
  # ld.gold warns once per ASan helper symbol; only real errors matter.
  mkdir -p "$scratch/logs"
  if ! "${build[@]}" "${build_jobs[@]}" --product "$p" >"$scratch/logs/build-$t.log" 2>&1; then
    grep -v "Cannot export local symbol" "$scratch/logs/build-$t.log" | grep -v "^\[" | tail -40 >&2
    echo "fuzz.sh: building $p failed" >&2; exit 1
  fi
done
[ "$build_only" -eq 0 ] || exit 0
bin=$("${build[@]}" --show-bin-path 2>/dev/null)

failed=0 total=0
for t in "${targets[@]}"; do
  p=$(product "$t")
  work="$scratch/corpus/$t" artifacts="$scratch/artifacts/$t/" log="$scratch/logs/$t"
  mkdir -p "$work" "$artifacts" "$log"
  rm -f "$log"/*.log
  dict=()
  [ -f "Tools/fuzz/dict/$t.dict" ] && dict=(-dict="Tools/fuzz/dict/$t.dict")
  args=("$work" "Tools/fuzz/corpus/$t" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
        -max_len=65536 -artifact_prefix="$artifacts" -print_final_stats=1)
  pids=()
  for j in $(seq 1 "$jobs"); do
    "$bin/$p" "${args[@]}" >"$log/$j.log" 2>&1 & pids+=($!)
  done
  rc=0
  for pid in "${pids[@]}"; do
    wait "$pid" || rc=1
    rm -rf "/dev/shm/replicafs-fuzz-$pid" # a target that stopped on a finding leaves its scratch files
  done
  execs=$(cat "$log"/*.log | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{s+=$1} END {print s+0}')
  total=$((total + execs))
  if [ $rc -ne 0 ]; then
    failed=1
    echo "fuzz $t: FAILED after $execs executions; input and report:" >&2
    ls "$artifacts" >&2
    grep -h -m3 -E "ERROR|fuzz invariant|Fatal error|deadly signal|timeout" "$log"/*.log >&2 || true
  else
    echo "fuzz $t: $execs executions in ${seconds}s x $jobs, no crash, hang or leak"
  fi
done
echo "fuzz: $total executions across ${#targets[@]} targets"
exit $failed
