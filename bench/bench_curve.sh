#!/usr/bin/env bash
# Cost of CurveZMQ encryption on the parameter-server transport (bench/RESULTS.md, "Encryption").
#   bench/bench_curve.sh [BUILD_DIR]
# `eigenbatch bench ps --curve`: each repeat runs the same push+pull rounds plain and encrypted
# (a fresh keypair, ZAP admitting it), interleaved in one process; best of each; the ratio is
# encrypted / plain throughput. Prints a markdown table; the raw JSON lines go to stderr.
set -euo pipefail
build=${1:-build}
eb="$build/eigenbatch"
row() { # args: label, then bench arguments
    local label=$1
    shift
    local j
    j=$("$eb" bench ps --curve --no-baseline "$@" | tail -1)
    echo "$j" >&2
    /usr/bin/python3 - "$label" "$j" <<'PY'
import json, sys
label, d = sys.argv[1], json.loads(sys.argv[2])
print(f"| {label} | {d['ms_per_round']:.1f} | {d['gbytes_per_s']:.3f} | "
      f"{d['curve_ms_per_round']:.1f} | {d['curve_gbytes_per_s']:.3f} | {d['curve_ratio']:.3f} |")
PY
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| configuration | plain ms/round | plain GB/s | CURVE ms/round | CURVE GB/s | encrypted/plain |"
echo "|---|---|---|---|---|---|"
row "tcp, 11.2 M floats, 1 shard" --floats 11200000 --shards 1 --transport tcp --rounds 5 --repeat 3
row "tcp, 11.2 M floats, 2 shards" --floats 11200000 --shards 2 --transport tcp --rounds 5 --repeat 3
row "tcp, 11.2 M floats, 2 shards, 2 I/O threads" --floats 11200000 --shards 2 --transport tcp --rounds 5 --repeat 3 --io-threads 2
row "tcp, 0.4 M floats (cnn), 2 shards" --floats 400000 --shards 2 --transport tcp --rounds 20 --repeat 3
row "ipc, 11.2 M floats, 2 shards" --floats 11200000 --shards 2 --transport ipc --rounds 5 --repeat 3
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
