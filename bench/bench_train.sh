#!/usr/bin/env bash
# bench_train.sh: eigenbatch's NN core against PyTorch (CPU), side by side in one run.
#
#   bench/bench_train.sh [--build DIR] [--steps K] [--models "mlp cnn ..."] [--threads "1 2"]
#                        [--out FILE]
#
# A model is NAME or NAME:BATCH:CxHxW (e.g. resnet50:8:3x224x224 for ImageNet's input). For each
# model (batch 128; resnet18_cifar: 32) and each thread count, runs
#   DIR/eigenbatch bench train --model M --batch B --threads T --steps K
#   /usr/bin/python3 bench/bench_torch_train.py --model M --batch B --threads T --steps K
# one after the other, measures OpenBLAS sgemm peak (DIR/eb_sgemm_peak) for the same thread
# counts, and prints a markdown table: images/s of a training step (ours, torch, ratio against the
# target), the HVP/step time ratio of both (and ours with the reuse of an eigen computation), our
# training GFLOP/s as a share of the sgemm peak, and
# the peak resident memory of both processes.
# A side that fails or is missing shows "n/a" and the run goes on. Raw JSON lines are kept in
# FILE.jsonl when --out is given (the table goes to FILE and stdout).
#
# Targets (issues "Neural-network core" and "CPU convolutions ahead of PyTorch's"): throughput
# >= 1.5x PyTorch for mlp and cnn, >= 1.2x for resnet20, >= 1.0x for resnet18_cifar and resnet18
# (torchvision's form, on the same 1x28x28 input); one HVP <= 2.0x a training step; conv-heavy
# models >= 50% of the single-thread sgemm GFLOP/s.
set -uo pipefail
cd "$(dirname "$0")/.."

build=build
steps=10
models="mlp cnn resnet20 resnet18_cifar resnet18"
threads="1 2"
out=""
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench_train.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done

py=/usr/bin/python3
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

# Last line of a command's stdout that parses as a JSON object, tagged with side/model/threads.
record() {
    local side=$1 model=$2 t=$3; shift 3
    local line
    line=$("$@" 2>/dev/null | tail -n 1)
    if [ -n "$line" ] && printf '%s' "$line" | "$py" -c 'import json,sys; json.loads(sys.stdin.read())' 2>/dev/null; then
        printf '{"side": "%s", "model": "%s", "threads": %s, "result": %s}\n' "$side" "$model" "$t" "$line" >>"$raw"
    else
        echo "bench_train.sh: $side $model threads $t: no result (command failed or missing)" >&2
        printf '{"side": "%s", "model": "%s", "threads": %s, "result": null}\n' "$side" "$model" "$t" >>"$raw"
    fi
}

# OpenBLAS kernels: eigenbatch asks for AVX-512/AVX2 ones where OpenBLAS does not know the CPU
# (nn_gemm_better_core); PyTorch's Linear layers and the sgemm peak get the same.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x "$build/eigenbatch" ]; then
    core=$(OPENBLAS_VERBOSE=2 "$build/eigenbatch" --help 2>&1 >/dev/null | sed -n 's/^Core: //p' | tail -n 1)
    [ -n "$core" ] && export OPENBLAS_CORETYPE="$core"
fi
echo "bench_train.sh: OpenBLAS kernels: ${OPENBLAS_CORETYPE:-as OpenBLAS chose}" >&2

# Other work on the machine distorts the numbers (multi-threaded rows most): record the load.
load_start=$(cut -d' ' -f1 /proc/loadavg)
tlist=$(echo "$threads" | tr ' ' ',')
if [ -x "$build/eb_sgemm_peak" ]; then
    echo "bench_train.sh: sgemm peak, threads $tlist" >&2
    record sgemm all 0 "$build/eb_sgemm_peak" --threads "$tlist"
else
    echo "bench_train.sh: $build/eb_sgemm_peak not built" >&2
    printf '{"side": "sgemm", "model": "all", "threads": 0, "result": null}\n' >>"$raw"
fi
for spec in $models; do
    # NAME[:BATCH[:CxHxW]]: the model, its batch (default 128; resnet18_cifar 32) and its input
    # (default: the model's own, 1x28x28 for the zoo's Fashion-MNIST forms)
    m=${spec%%:*}
    rest=${spec#"$m"}; rest=${rest#:}
    b=${rest%%:*}
    input=${rest#"$b"}; input=${input#:}
    if [ -z "$b" ]; then
        b=128
        [ "$m" = resnet18_cifar ] && b=32
    fi
    inarg=()
    [ -n "$input" ] && inarg=(--input "$input")
    for t in $threads; do
        echo "bench_train.sh: $spec batch $b threads $t" >&2
        if [ -x "$build/eigenbatch" ]; then
            record ours "$spec" "$t" env OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" \
                "$build/eigenbatch" bench train --model "$m" --batch "$b" --threads "$t" \
                --steps "$steps" "${inarg[@]}"
        else
            record ours "$spec" "$t" false
        fi
        # torch.set_num_threads() does not reach the OpenBLAS that PyTorch's Linear layers call
        # (Debian's pthread build): without OPENBLAS_NUM_THREADS it runs on every core.
        record torch "$spec" "$t" env OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t" \
            "$py" bench/bench_torch_train.py \
            --model "$m" --batch "$b" --threads "$t" --steps "$steps" "${inarg[@]}"
    done
done

load_end=$(cut -d' ' -f1 /proc/loadavg)
table=$("$py" - "$raw" "$load_start" "$load_end" "$(nproc)" "$steps" <<'EOF'
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak, peak_n = {}, None
for r in rows:
    if r["side"] == "sgemm" and r["result"]:
        peak = {int(k): v for k, v in r["result"]["sgemm_peak"].items()}
        peak_n = r["result"].get("n")
res = {(r["side"], r["model"], r["threads"]): r["result"] for r in rows if r["side"] != "sgemm"}
speed_target = {"mlp": 1.5, "cnn": 1.5, "resnet20": 1.2, "resnet18_cifar": 1.0, "resnet18": 1.0}
conv_heavy = {"cnn", "resnet20", "resnet18_cifar", "resnet18"}
reuse_target = {"cnn": 1.6, "resnet20": 1.6}  # one HVP inside an eigen computation
models = list(dict.fromkeys(r["model"] for r in rows if r["side"] != "sgemm"))
threads = sorted({r["threads"] for r in rows if r["side"] != "sgemm"})

def f(x, fmt):
    return "n/a" if x is None else fmt % x

print("| model | batch | threads | ours img/s | torch img/s | ours/torch (target) | "
      "HVP/step ours | HVP/step torch | reused HVP/step ours | ours GFLOP/s | "
      "of sgemm peak 1 thr | peak MiB ours | peak MiB torch | ours/torch by CPU time | "
      "HVP/step by CPU time ours | HVP/step by CPU time torch | met |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
misses = []
for m in models:
    for t in threads:
        o, p = res.get(("ours", m, t)), res.get(("torch", m, t))
        batch = (o or p or {}).get("batch")
        oi = o["images_per_s"] if o else None
        pi = p["images_per_s"] if p else None
        ratio = oi / pi if oi and pi else None
        oh = o["hvp_over_step"] if o else None
        ph = p["hvp_over_step"] if p else None
        orh = o.get("hvp_reuse_over_step") if o else None
        og = o["gflops"] if o else None
        oc = o.get("step_cpu_s") if o else None
        pc = p.get("step_cpu_s") if p else None
        cratio = pc / oc if oc and pc else None
        ohc = o["hvp_cpu_s"] / oc if oc else None
        phc = p["hvp_cpu_s"] / pc if pc else None
        om = o.get("peak_rss_mib") if o else None
        pm = p.get("peak_rss_mib") if p else None
        share = og / peak[1] if og and peak.get(1) else None
        checks = []
        if ratio is not None:
            checks.append(ratio >= speed_target.get(m, 1.0))
            if ratio < speed_target.get(m, 1.0):
                misses.append("%s %d thr: throughput %.2fx torch < %.1fx" %
                              (m, t, ratio, speed_target.get(m, 1.0)))
        if oh is not None:
            checks.append(oh <= 2.0)
            if oh > 2.0:
                misses.append("%s %d thr: HVP %.2fx step > 2.0x" % (m, t, oh))
        if m in reuse_target and t == 1 and orh is not None:
            checks.append(orh <= reuse_target[m])
            if orh > reuse_target[m]:
                misses.append("%s 1 thr: reused HVP %.2fx step > %.1fx" % (m, orh, reuse_target[m]))
        if m in conv_heavy and t == 1 and share is not None:
            checks.append(share >= 0.5)
            if share < 0.5:
                misses.append("%s 1 thr: %.0f%% of sgemm peak < 50%%" % (m, 100 * share))
        met = "n/a" if not checks else ("yes" if all(checks) else "no")
        print("| %s | %s | %d | %s | %s | %s (%.1fx) | %s | %s | %s | %s | %s | %s | %s | %s | "
              "%s | %s | %s |" % (
            m, batch if batch else "n/a", t, f(oi, "%.0f"), f(pi, "%.0f"),
            f(ratio, "%.2fx"), speed_target.get(m, 1.0), f(oh, "%.2f"), f(ph, "%.2f"),
            f(orh, "%.2f"), f(og, "%.1f"), f(None if share is None else 100 * share, "%.0f%%"),
            f(om, "%.0f"), f(pm, "%.0f"), f(cratio, "%.2fx"), f(ohc, "%.2f"), f(phc, "%.2f"),
            met))
print()
print("sgemm peak (OpenBLAS, n=%s): %s" % (
    peak_n, ", ".join("%d thr %.1f GFLOP/s" % (k, v) for k, v in sorted(peak.items()))
    if peak else "n/a"))
print("Reused HVP: a product inside an eigen computation (forward and gradient passes reused, "
      "`nn_net_hvp_reuse`), target <= 1.6 steps for cnn and resnet20 at 1 thread.")
print("GFLOP/s counts a training step as 3x the forward FLOPs of Conv2d and Linear layers. "
      "The sgemm share is judged on 1-thread rows (conv-heavy models). Peak MiB: the process's "
      "maxrss (getrusage) after its steps and HVPs; PyTorch's includes the interpreter and its "
      "libraries. By CPU time: the ratio of the process CPU seconds of a step (torch's over ours) "
      "and of an HVP over a step; on a shared machine a 1-thread run's CPU time is inflated less "
      "by other jobs than its wall-clock time (judge 1-thread rows only: with 2 threads it counts "
      "the spinning of idle threads too).")
load0, load1, cores = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print("Run: %s timed steps and HVPs per row after one warm-up; %d cores; load average %.1f at "
      "the start, %.1f at the end%s." % (sys.argv[5], cores, load0, load1,
      " (the machine was busy: numbers are unreliable, multi-threaded rows most)"
      if max(load0, load1) > 0.5 * cores else ""))
if misses:
    print()
    print("Targets missed: " + "; ".join(misses) + ".")
EOF
)
echo "$table"
if [ -n "$out" ]; then
    printf '%s\n' "$table" >"$out"
    cp "$raw" "$out.jsonl"
fi
