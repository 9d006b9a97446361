#!/usr/bin/env bash
# Run the libFuzzer harnesses of tests/fuzz (wire decoder, status reply decoder, safetensors reader, Datum decoder, YAML
# loader, checkpoint manifest and coordinator files) and print, per harness: executions, exec/s
# (over its wall time), coverage (cov: and ft: of libFuzzer's final line) and whether it crashed.
# Builds the fuzz build directory first (clang, -DEB_FUZZ=ON) when needed. New corpus entries go to BUILD/fuzz-corpus/
# (the committed seeds in tests/fuzz/corpus/ are only read); crash inputs to BUILD/fuzz-artifacts/.
#
# usage: bench/fuzz.sh [--seconds N] [--runs N] [--build DIR] [--only NAME]
#   --seconds N  stop each harness after N seconds (default 60 when --runs is not given)
#   --runs N     stop each harness after N executions (with --seconds: whichever comes first)
#   --build DIR  fuzz build directory (default build-fuzz)
#   --only NAME  run only fuzz_NAME (wire, status, safetensors, datum, config, ckpt)
# Exit status: 0, 1 when a harness crashed (or leaked, or tripped a sanitizer), 2 on usage or
# build errors.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="" runs="" build=build-fuzz only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--runs N] [--build DIR] [--only NAME]" >&2; exit 2 ;;
  esac
done
[ -z "$seconds$runs" ] && seconds=60

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$build" -DEB_FUZZ=ON -DEB_CUDA=OFF >/dev/null || exit 2
fi
cmake --build "$build" -j "$(nproc)" --target eb_fuzz >/dev/null || exit 2

limits=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
[ -n "$seconds" ] && limits+=("-max_total_time=$seconds")
[ -n "$runs" ] && limits+=("-runs=$runs")
names=(wire status safetensors datum config ckpt)
[ -n "$only" ] && names=("$only")

crashed=0
printf '%-12s %12s %9s %7s %8s %s\n' harness executions exec/s cov ft result
for n in "${names[@]}"; do
  work="$build/fuzz-corpus/$n" art="$build/fuzz-artifacts"
  log="$build/fuzz-$n.log"
  mkdir -p "$work" "$art"
  t0=$(date +%s.%N)
  set +e
  "$build/fuzz_$n" "${limits[@]}" -artifact_prefix="$art/$n-" "$work" "tests/fuzz/corpus/$n" \
    >"$log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # over the harness's whole wall time (corpus loading included): libFuzzer's own figure is an
  # integer division by whole seconds
  rate=$(awk -v n="${execs:-0}" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  final=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$final")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$final")
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="CRASH (exit $rc, see $log)"
    crashed=1
  fi
  printf '%-12s %12s %9s %7s %8s %s\n' "$n" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "$result"
done
exit "$crashed"
