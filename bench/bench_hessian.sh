#!/bin/sh
# bench_hessian.sh: products and seconds to reach a tolerance, for the top Hessian eigenvalue
# (bench/RESULTS.md, "## Hessian analysis"): eigenbatch's power iteration (stops on the residual
# |Hv - lambda v| <= tol |lambda|), eigenbatch's Lanczos (the same residual, at most 5x the
# products) and PyTorch's power iteration on double-backprop HVPs as PyHessian runs it (stops on
# the change of lambda, bench/torch_ref.py), side by side in one run, on the same weights and
# batch (the first 128 Fashion-MNIST records, BatchNorm eval), 1 thread. Full Hessian, and for
# eigenbatch also the block of the last 2 parameter layers.
# Usage: bench/bench_hessian.sh [BUILD_DIR] [MODELS...] (default: build, cnn resnet20).
set -eu
BUILD=${1:-build}
[ $# -gt 0 ] && shift
MODELS=${*:-cnn resnet20}
B=$BUILD/eigenbatch
PY=/usr/bin/python3
IDX=/usr/share/datasets/fashion-mnist
W=${WORK:-$(mktemp -d /tmp/eb-bench-hess-XXXXXX)}
mkdir -p "$W"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
"$B" convert fashion-mnist --in "$IDX" --out "$W/fm" --force >/dev/null 2>&1
# shellcheck disable=SC2086
$PY bench/eig_inputs.py --idx-dir "$IDX" --out "$W" --n 128 $MODELS

json() { $PY -c "import json,sys; j=json.loads(sys.stdin.read()); print(j['$1'])"; }
echo "| model | block | tol | method | eigenvalue | products | seconds | converged |"
echo "|---|---|---|---|---|---|---|---|"
for m in $MODELS; do
  for k in 0 2; do
    for tol in 1e-3 1e-4; do
      for meth in power lanczos; do
        mi=256; [ $meth = lanczos ] && mi=51   # Lanczos: at most 5 x 51 = 255 products
        out=$("$B" eig --model $m --weights "$W/$m.safetensors" --data "$W/fm" --first 128 \
              --preset accurate --tol $tol --max-iter $mi --method $meth --block-last $k \
              --bn eval --threads 1 --seed 0 | tail -1)
        echo "| $m | $k | $tol | eigenbatch $meth | $(echo "$out" | json eigenvalue) |" \
             "$(echo "$out" | json iterations) | $(echo "$out" | json seconds) |" \
             "$(echo "$out" | json converged) |"
      done
      if [ $k = 0 ]; then
        OMP_NUM_THREADS=1 $PY bench/torch_ref.py --model $m --weights "$W/$m.safetensors" \
            --input "$W/${m}_in.safetensors" --bn eval --out "$W/ref_$m.safetensors" --eig \
            --eig-iters 256 --eig-tol $tol --threads 1 >/dev/null
        $PY - "$W/ref_$m.safetensors" $m $tol <<'PYEOF'
import sys
sys.path.insert(0, "bench")
import safetensors_io
t, _ = safetensors_io.load(sys.argv[1])
print("| %s | 0 | %s | PyTorch power (change stop) | %.6g | %d | %.3f | - |"
      % (sys.argv[2], sys.argv[3], float(t["eig"]), int(t["eig_iters"]), float(t["eig_seconds"])))
PYEOF
      fi
    done
  done
done
