#!/bin/sh
# bench_eigsvc.sh: issue 5's eigen-service results (bench/RESULTS.md, "## Eigen service").
#  1. isolation: training throughput (1 shard + 1 worker pinned to core 0, cnn on 6400
#     Fashion-MNIST records, 3 epochs at B = 128) with the eigen service computing on core 1
#     (paper preset, Hessian batch 128, every epoch) against the same run without it;
#  2. cost of one eigen computation (paper preset), full and block (last 2 layers), in
#     training-step equivalents (`eigenbatch bench train` step time at B = 128, 1 thread);
#  3. agreement with PyTorch double-backprop power iteration (bench/torch_ref.py), accurate
#     preset, BatchNorm eval, cnn and resnet20 on the same weights and batch (first 128 records).
# Usage: bench/bench_eigsvc.sh [BUILD_DIR] (default build); WORK=dir keeps the files.
set -eu
BUILD=${1:-build}
B=$BUILD/eigenbatch
PY=/usr/bin/python3
IDX=/usr/share/datasets/fashion-mnist
W=${WORK:-$(mktemp -d /tmp/eb-bench-eig-XXXXXX)}
mkdir -p "$W"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"

"$B" convert fashion-mnist --in "$IDX" --out "$W/fm" --force >/dev/null 2>&1
$PY bench/eig_inputs.py --idx-dir "$IDX" --out "$W" --n 128 cnn resnet20

json() { $PY -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

echo "## agreement with PyTorch (accurate preset, BN eval, first 128 records)"
for m in cnn resnet20; do
    out=$("$B" eig --model $m --weights "$W/$m.safetensors" --data "$W/fm" --first 128 \
          --preset accurate --method power --bn eval --threads 1 --seed 0 | tail -1)
    ev=$(echo "$out" | json eigenvalue); it=$(echo "$out" | json iterations)
    $PY bench/torch_ref.py --model $m --weights "$W/$m.safetensors" --input "$W/${m}_in.safetensors" \
        --bn eval --out "$W/ref_$m.safetensors" --eig --eig-iters 50 --eig-tol 1e-3 --threads 1
    $PY - "$W/ref_$m.safetensors" "$ev" "$it" $m <<'PYEOF'
import sys
sys.path.insert(0, "bench")
import safetensors_io
t, _ = safetensors_io.load(sys.argv[1])
ev, it, m = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ref = float(t["eig"])
print("%s: eigenbatch %.6f (%d it)  pytorch %.6f (%d it)  rel.diff %.2e"
      % (m, ev, it, ref, int(t["eig_iters"]), abs(ev - ref) / abs(ref)))
PYEOF
done

echo "## cost of one eigen computation (paper preset, Hessian batch 128, 1 thread)"
for m in cnn resnet20; do
    step=$("$B" bench train --model $m --batch 128 --threads 1 --steps 5 --input 1x28x28 \
           2>/dev/null | tail -1 | json step_s_min)
    for k in 0 2; do
        out=$("$B" eig --model $m --weights "$W/$m.safetensors" --data "$W/fm" --first 128 \
              --preset paper --block-last $k --threads 1 --seed 0 | tail -1)
        s=$(echo "$out" | json seconds); it=$(echo "$out" | json iterations)
        $PY -c "print('%s block_last_k=%d: %.3f s, %d iterations = %.1f training steps (step %.3f s)' % ('$m', $k, $s, $it, $s / $step, $step))"
    done
done

echo "## isolation (cnn, 6400 records, 3 epochs, B 128; shard + worker on core 0)"
$PY - "$IDX" "$W/small" 6400 <<'PYEOF'
import gzip, os, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
im = gzip.open(src + "/train-images-idx3-ubyte.gz").read()
lb = gzip.open(src + "/train-labels-idx1-ubyte.gz").read()
h = bytearray(im[:16]); h[4:8] = n.to_bytes(4, "big")
open(out + "/train-images-idx3-ubyte", "wb").write(bytes(h) + im[16:16 + n * 784])
h = bytearray(lb[:8]); h[4:8] = n.to_bytes(4, "big")
open(out + "/train-labels-idx1-ubyte", "wb").write(bytes(h) + lb[8:8 + n])
PYEOF
"$B" convert fashion-mnist --in "$W/small" --out "$W/fm6400" --force >/dev/null 2>&1
P=421738   # cnn for 1x28x28, 10 classes: parameters
R=192      # and BatchNorm buffers
run() { # $1: with (1) or without (0) the eigen service
    ep="ipc://$W/s0.sock"
    rm -f "$W/s0.sock"
    taskset -c 0 "$B" server --shard 0 --shards 1 --workers 1 --bind "$ep" --params $P \
        --buffers $R --samples 6400 --batch 128 --lr 0.05 --method ABS --epochs 3 \
        2>/dev/null &
    sp=$!
    if [ "$1" = 1 ]; then
        taskset -c 1 "$B" eigensvc --connect "$ep" --model cnn --data "$W/fm6400" --method ABS \
            --epochs 3 --batch 128 --lr 0.05 --kappa 0 --alpha 1e9 --threads 1 --timeout-ms 3000 \
            --eig-metrics "$W/iso.jsonl" 2>/dev/null &
        ep2=$!
    fi
    taskset -c 0 "$B" worker --connect "$ep" --model cnn --data "$W/fm6400" --classes 10 \
        --batch 128 --micro-batch 128 --threads 1 --params $P --buffers $R 2>&1 \
        | grep -o 'done: .*'
    wait $sp
    if [ "$1" = 1 ]; then wait $ep2; fi
}
rm -f "$W/iso.jsonl"
echo "off: $(run 0)"
echo "on:  $(run 1)"
echo "eig events: $(grep -c '"eig"' "$W/iso.jsonl" || true) ($(grep -o '"seconds":[0-9.e-]*' "$W/iso.jsonl" | tr '\n' ' '))"
echo "off: $(run 0)"
echo "on:  $(run 1)"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
