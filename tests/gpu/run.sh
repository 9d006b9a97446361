#!/usr/bin/env bash
# tests/gpu/run.sh: the GPU checks, on a machine with one GPU, from a bundle made here with
#   cmake -B build-gpu -DEB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 && make -C build-gpu -j
#   /work/shared/gpu/bundle.sh build-gpu eb-gpu.tar.xz build-gpu/gpu_check
# and unpacked there: tar xJf eb-gpu.tar.xz -C DIR && . DIR/env.sh && tests/gpu/run.sh
# Steps (one JSON line each; the whole run stays under 8 minutes):
#   (a)/(b) gpu_check: whole nets (cnn, resnet20) CPU vs CUDA: loss, gradient, HVP (1e-4), top
#           eigenvalue (1e-3); test_nn_cuda: GEMM and cnn parity
#   (c)     2 epochs of Fashion-MNIST with the worker on cpu and on cuda (when the data exist)
#   (d)     eigenbatch bench train --device cuda for resnet20 and resnet18 (when bench exists)
set -uo pipefail
fail=0
step() { echo "{\"step\":\"$1\",\"rc\":$2}"; [ "$2" -eq 0 ] || [ "$2" -eq 77 ] || fail=1; }
timeout 180 gpu_check; step gpu_check $?
timeout 60 test_nn_cuda >/dev/null; step test_nn_cuda $?
data=${EB_FMNIST_LMDB:-}
if [ -n "$data" ] && [ -d "$data/train" ]; then
  for dev in cpu cuda; do
    out=$(mktemp -d)
    timeout 120 eigenbatch train --model cnn --data-train "$data/train" --data-test "$data/test" \
      --epochs 2 --device "$dev" --output-dir "$out" >/dev/null 2>&1
    step "train_fmnist_$dev" $?
    grep '"test_acc"' "$out/metrics.jsonl" | tail -1
  done
else
  echo '{"step":"train_fmnist","skipped":"set EB_FMNIST_LMDB to a folder with train/ and test/"}'
fi
for m in resnet20 resnet18; do
  timeout 60 eigenbatch bench train --model "$m" --device cuda 2>/dev/null | tail -1
  step "bench_$m" ${PIPESTATUS[0]}
done
exit $fail
