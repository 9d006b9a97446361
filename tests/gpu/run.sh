#!/usr/bin/env bash
# tests/gpu/run.sh [BUNDLE.tar.xz]: the GPU checks, in one call, on a bare machine with one GPU,
# in under 8 minutes (each step has its own timeout and the run skips what would pass the budget).
#
# Prepare here (a machine with the CUDA toolkit; no GPU needed), from the repository root:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DEB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
#   nice make -C build-gpu -j2 eigenbatch gpu_check test_nn_cuda test_eval_device
#   mkdir -p build-gpu/carry && bundle.sh build-gpu build-gpu/carry/eb-gpu.tar.xz \
#       build-gpu/gpu_check
#   cp /usr/share/datasets/fashion-mnist/*.gz build-gpu/carry/     # optional, for step (c)
# (bundle.sh: packs the binaries with the shared libraries they link, to a tar.xz; the binaries
# link libnccl.so.2 when CMake found NCCL: the target needs it too, as PyTorch's
# nvidia-nccl package provides; add -DEB_NCCL=OFF for a target without it)
# carry build-gpu/carry (about 8 MB, 38 MB with Fashion-MNIST) with the tree and run there, from
# the repository root:  tests/gpu/run.sh build-gpu/carry/eb-gpu.tar.xz
# Without an argument the bundle is $EB_GPU_BUNDLE or build-gpu/carry/eb-gpu.tar.xz; when neither
# exists, the binaries must be on PATH already (a machine with a build of its own). The IDX files
# of Fashion-MNIST are looked for in $EB_FMNIST_IDX, then beside the bundle.
#
# Steps, one JSON line each ({"step", "rc", "s"}), with their output before it:
#   (a)+(b) gpu_check: every layer's forward, R-forward, backward, R-backward, the loss, SGD and
#           FGSM on the GPU against the CPU backend (1e-4); cnn and resnet20: loss, gradient, BN
#           statistics, one SGD step, one HVP (1e-4), top eigenvalue (1e-3); a table
#   (a')    test_nn_cuda: the unit test of the CUDA backend (GEMM, cnn parity)
#   (a'')   test_eval_device: `eigenbatch eval --device cuda` scores as the CPU does
#   (c)     2 epochs of Fashion-MNIST (cnn, BL, 2 workers) with the workers on cuda and, in the
#           background from the end of (a)+(b) (at most the budget left less 40 s), on the CPU; the
#           GPU run's test accuracy must reach the CPU run's minus 1 point (joined last, after (d))
#   (d)     eigenbatch bench train --device cuda, resnet20 (3x32x32) and resnet18 (3x224x224),
#           batch 256, next to PyTorch CUDA on the same machine (bench/bench_torch_train.py,
#           when torch with CUDA is importable; else a "skipped" line), and one "compare" line
#           per model: images/s and HVP seconds, ours over torch's
#   (e)     the same bench with EB_NN_PROFILE=1: one {"profile"} line per layer kind and pass
# EB_GPU_LOGS=FILE.tar.gz keeps the steps' logs and the runs' metrics.
# Exit: 0 when every step that ran passed (a skipped step is not a failure), 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
t_start=$SECONDS
budget=${EB_GPU_BUDGET_S:-420} # seconds; steps that would end past it are skipped
fail=0
tmp=$(mktemp -d)
# EB_GPU_LOGS=FILE.tar.gz: the steps' logs and the runs' metrics are packed there at the end
s_exit() {
    if [ -n "${EB_GPU_LOGS:-}" ]; then
        tar czf "$EB_GPU_LOGS" -C "$tmp" --exclude=./eb --exclude=./fm --exclude='*checkpoints*' \
            --exclude='*.safetensors' . 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap s_exit EXIT

json_step() { # name rc seconds [extra json fields]
    echo "{\"step\":\"$1\",\"rc\":$2,\"s\":$3${4:+,$4}}"
    [ "$2" -eq 0 ] || [ "$2" -eq 77 ] || fail=1
}
skip() { echo "{\"step\":\"$1\",\"skipped\":\"$2\"}"; }
left() { echo $((budget - (SECONDS - t_start))); }
# run NAME TIMEOUT OUT CMD...: CMD with a timeout when the budget allows it; its stdout goes to
# OUT ("-": this stdout) and its stderr to OUT.err (or this stderr). Returns CMD's status.
run() {
    local name=$1 lim=$2 out=$3 rc t0=$SECONDS
    shift 3
    if [ "$(left)" -lt "$lim" ]; then
        skip "$name" "budget: $(left) s left, step may take $lim s"
        return 1
    fi
    if [ "$out" = - ]; then
        timeout "$lim" "$@"
    else
        timeout "$lim" "$@" >"$out" 2>"$out.err"
    fi
    rc=$?
    json_step "$name" "$rc" $((SECONDS - t0))
    [ "$rc" -eq 77 ] && return 0 # skipped: not a failure
    return "$rc"
}

# ---- the bundle -----------------------------------------------------------------------------
bundle=${1:-${EB_GPU_BUNDLE:-build-gpu/carry/eb-gpu.tar.xz}}
if [ -f "$bundle" ]; then
    if ! mkdir -p "$tmp/eb" || ! tar xJf "$bundle" -C "$tmp/eb"; then
        skip bundle "cannot unpack $bundle"
        exit 1
    fi
    # The bundle's libstdc++/libgcc_s come from the build machine; a newer one on this machine
    # serves every library built against the older one (and cuDNN/NCCL may need the newer)
    for l in libstdc++.so.6 libgcc_s.so.1; do
        sys_l=$(ldconfig -p 2>/dev/null | awk -v l="$l" '$1 == l && /x86-64/ {print $NF; exit}')
        if [ -n "$sys_l" ] && [ -e "$tmp/eb/lib/$l" ] &&
            { [ "$l" != libstdc++.so.6 ] || grep -qa GLIBCXX_3.4.30 "$sys_l"; }; then
            rm -f "$tmp/eb/lib/$l"
        fi
    done
    host_ld=${LD_LIBRARY_PATH:-} # for python3 (PyTorch): its own libraries, not the bundle's
    # shellcheck disable=SC1091
    . "$tmp/eb/env.sh"
    carry_dir=$(dirname "$bundle")
else
    echo "run.sh: no bundle at '$bundle'; using the binaries on PATH" >&2
    carry_dir=
    host_ld=${LD_LIBRARY_PATH:-}
fi
py() { LD_LIBRARY_PATH=$host_ld python3 "$@"; }
for b in eigenbatch gpu_check; do
    command -v "$b" >/dev/null || { skip "$b" "not on PATH (no bundle)"; exit 1; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
    sed 's/^/gpu: /'
threads=$(nproc)

# ---- (a) (b) -------------------------------------------------------------------------------
run gpu_check 150 - gpu_check

# ---- (c) starts next: the CPU reference run takes the longest and runs in the background (not
# beside gpu_check, whose CPU side would share the cores with it) ---------------------------
idx=${EB_FMNIST_IDX:-$carry_dir}
have_fm=0
if [ -n "$idx" ] && { [ -e "$idx/train-images-idx3-ubyte.gz" ] || [ -e "$idx/train-images-idx3-ubyte" ]; }; then
    if eigenbatch convert fashion-mnist --in "$idx" --split train --out "$tmp/fm/train" >/dev/null 2>"$tmp/convert.log" &&
        eigenbatch convert fashion-mnist --in "$idx" --split test --out "$tmp/fm/test" >/dev/null 2>>"$tmp/convert.log"; then
        have_fm=1
    else
        skip train_fmnist "eigenbatch convert failed on $idx"
        fail=1
    fi
else
    skip train_fmnist "no Fashion-MNIST IDX files (EB_FMNIST_IDX or beside the bundle)"
fi
train_fm=(eigenbatch train --model cnn --data "$tmp/fm/train" --test "$tmp/fm/test" --epochs 2
    --seed 1)
last_acc() { grep -o '"test_accuracy":[0-9.eE+-]*' "$1/metrics.jsonl" 2>/dev/null | tail -1 | cut -d: -f2; }
if [ $have_fm = 1 ]; then
    cpu_threads=$((threads > 4 ? (threads - 2) / 2 : 1)) # per worker; two workers
    (
        timeout $(($(left) - 40)) nice "${train_fm[@]}" --device cpu --threads "$cpu_threads" \
            --output-dir "$tmp/run_cpu" >"$tmp/run_cpu.log" 2>&1
        echo $? >"$tmp/run_cpu.rc"
    ) &
    cpu_pid=$!
fi

if command -v test_nn_cuda >/dev/null; then
    run test_nn_cuda 60 "$tmp/test_nn_cuda.log" test_nn_cuda || tail -n 20 "$tmp"/test_nn_cuda.log* 2>/dev/null
else
    skip test_nn_cuda "not in the bundle"
fi
# (a'') eval on the GPU scores a run's weights as its own test evaluation did
if command -v test_eval_device >/dev/null; then
    EB_BINARY=$(command -v eigenbatch)
    export EB_BINARY # the test runs the binary
    run test_eval_device 60 "$tmp/test_eval_device.log" test_eval_device ||
        tail -n 20 "$tmp"/test_eval_device.log* 2>/dev/null
else
    skip test_eval_device "not in the bundle"
fi

# ---- (c) the GPU run ---------------------------------------------------------------------------
if [ $have_fm = 1 ]; then
    run train_fmnist_cuda 150 "$tmp/run_cuda.log" "${train_fm[@]}" --device cuda --threads 2 \
        --output-dir "$tmp/run_cuda" || tail -n 5 "$tmp"/run_cuda.log* 2>/dev/null
fi

# ---- (d) throughput next to PyTorch CUDA -----------------------------------------------------
torch_ok=0
if py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    torch_ok=1
fi
bench_pair() { # model input steps
    local m=$1 in=$2 st=$3
    if run "bench_$m" 90 "$tmp/ours_$m" eigenbatch bench train --model "$m" --input "$in" \
        --batch 256 --threads 1 --steps "$st" --device cuda; then
        tail -1 "$tmp/ours_$m" | sed 's/^{/{"impl":"eigenbatch",/'
    else
        tail -n 3 "$tmp/ours_$m.err" 2>/dev/null
    fi
    if [ $torch_ok = 0 ]; then
        skip "torch_$m" "no PyTorch with CUDA on this machine"
        return
    fi
    if [ "$m" = resnet18 ] && ! py -c 'import torchvision' 2>/dev/null; then
        skip "torch_$m" "no torchvision (bench/torch_zoo.py takes ResNet-18 from it)"
        return
    fi
    if run "torch_$m" 120 "$tmp/torch_$m" env LD_LIBRARY_PATH="$host_ld" python3 bench/bench_torch_train.py --model "$m" \
        --input "$in" --batch 256 --threads 1 --steps "$st" --device cuda; then
        tail -1 "$tmp/torch_$m"
    else
        tail -n 3 "$tmp/torch_$m.err" 2>/dev/null
    fi
    py - "$m" "$tmp/ours_$m" "$tmp/torch_$m" <<'PY' 2>/dev/null || true
import json, sys
m = sys.argv[1]
ours, ref = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[2:4])
print(json.dumps({"compare": m, "device": "cuda", "batch": ours["batch"],
                  "train_img_s": ours["images_per_s"], "torch_train_img_s": ref["images_per_s"],
                  "train_ratio": ours["images_per_s"] / ref["images_per_s"],
                  # ours copies each batch from host memory, as training does: so does this one
                  "torch_train_img_s_host": ref.get("images_per_s_host"),
                  "train_ratio_host": ours["images_per_s"] / ref["images_per_s_host"]
                  if ref.get("images_per_s_host") else None,
                  "hvp_img_s": ours["batch"] / ours["hvp_s"],
                  "torch_hvp_img_s": ref["batch"] / ref["hvp_s"],
                  "hvp_s": ours["hvp_s"], "torch_hvp_s": ref["hvp_s"],
                  "hvp_ratio": ours["hvp_s"] / ref["hvp_s"]}))
PY
}
bench_pair resnet20 3x32x32 10
bench_pair resnet18 3x224x224 3

# ---- (e) where the time goes: seconds per layer kind and pass (EB_NN_PROFILE), a line each ------
for m in "resnet20 3x32x32 3" "resnet18 3x224x224 1"; do
    set -- $m
    if run "profile_$1" 60 "$tmp/profile_$1" env EB_NN_PROFILE=1 eigenbatch bench train \
        --model "$1" --input "$2" --batch 256 --threads 1 --steps "$3" --device cuda; then
        sed -n 's/.*nn profile: \([a-z0-9]*\) \([a-z]*\) \([0-9.]*\) s, \([0-9]*\) calls.*/{"profile":"'"$1"'","layer":"\1","pass":"\2","s":\3,"calls":\4}/p' \
            "$tmp/profile_$1.err"
    fi
done

# ---- (c) the CPU run's end and the accuracies ---------------------------------------------------
if [ $have_fm = 1 ]; then
    wait "$cpu_pid"
    rc_cpu=$(cat "$tmp/run_cpu.rc" 2>/dev/null || echo 1)
    json_step train_fmnist_cpu "$rc_cpu" 0
    [ "$rc_cpu" -eq 0 ] || tail -n 5 "$tmp/run_cpu.log"
    acc_cpu=$(last_acc "$tmp/run_cpu")
    acc_gpu=$(last_acc "$tmp/run_cuda")
    ok=$(awk -v a="${acc_gpu:-0}" -v b="${acc_cpu:-1}" 'BEGIN { print (a >= b - 0.01) ? 0 : 1 }')
    json_step train_fmnist_accuracy "$ok" 0 "\"acc_cuda\":${acc_gpu:-null},\"acc_cpu\":${acc_cpu:-null}"
fi

echo "{\"step\":\"total\",\"rc\":$fail,\"s\":$((SECONDS - t_start))}"
exit $fail
