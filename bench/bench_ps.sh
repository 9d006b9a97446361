#!/usr/bin/env bash
# Parameter-server transport benchmarks (bench/RESULTS.md, "Parameter server transport").
#   bench/bench_ps.sh [BUILD_DIR]
# 1. push+pull rounds of a resnet18_cifar-sized model (11.2 M floats) with 1, 2 and 4 shards over tcp
#    loopback, each interleaved with a raw TCP loopback exchange of the same bytes (preallocated
#    buffers), best of 5; plus the checksum kinds and the other transports at 2 shards.
# 2. cnn training throughput: 2 workers + 2 shards in one process against one worker without
#    servers (same micro-batches, same total threads), best of 3.
# Prints a markdown table; the raw JSON lines go to stderr.
set -euo pipefail
build=${1:-build}
eb="$build/eigenbatch"
bench_ps() { "$eb" bench ps "$@"; }
row() { # args: label, then bench arguments
    local label=$1
    shift
    local j
    j=$(bench_ps "$@" | tail -1)
    echo "$j" >&2
    /usr/bin/python3 - "$label" "$j" <<'PY'
import json, sys
label, d = sys.argv[1], json.loads(sys.argv[2])
if d["bench"] == "ps":
    raw = d.get("raw_tcp_gbytes_per_s", 0)
    ratio = d.get("ratio")
    print(f"| {label} | {d['ms_per_round']:.1f} | {d['gbytes_per_s']:.2f} | "
          f"{raw:.2f} | {ratio:.2f} |" if ratio else
          f"| {label} | {d['ms_per_round']:.1f} | {d['gbytes_per_s']:.2f} | - | - |")
else:
    print(f"| {label} | {d['single_images_per_s']:.0f} | {d['images_per_s']:.0f} | "
          f"{100 * d['overhead']:.1f}% |")
PY
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| configuration | ms per round | GB/s (push+pull) | raw TCP GB/s | ratio |"
echo "|---|---|---|---|---|"
for s in 1 2 4; do
    row "tcp, $s shard(s), fletcher64" --floats 11200000 --shards "$s" --transport tcp --rounds 10 --repeat 5
done
row "tcp, 2 shards, no checksum" --floats 11200000 --shards 2 --transport tcp --rounds 10 --repeat 5 --checksum none
row "tcp, 2 shards, crc32" --floats 11200000 --shards 2 --transport tcp --rounds 10 --repeat 5 --checksum crc32
row "ipc, 2 shards, fletcher64" --floats 11200000 --shards 2 --transport ipc --rounds 10 --repeat 5
row "inproc, 2 shards, fletcher64" --floats 11200000 --shards 2 --transport inproc --rounds 10 --repeat 5
echo
echo "| cnn, batch 256, micro-batch 128 | one worker, no server (img/s) | workers + shards (img/s) | overhead |"
echo "|---|---|---|---|"
row "1 worker + 1 shard, inproc, 1 thread" --model cnn --workers 1 --shards 1 --threads 1 --batch 256 --steps 10 --repeat 3 --transport inproc
row "2 workers + 2 shards, inproc, 2 x 1 threads" --model cnn --workers 2 --shards 2 --threads 1 --batch 256 --steps 10 --repeat 3 --transport inproc
row "2 workers + 2 shards, tcp, 2 x 1 threads" --model cnn --workers 2 --shards 2 --threads 1 --batch 256 --steps 10 --repeat 3 --transport tcp
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
