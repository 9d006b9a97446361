#!/usr/bin/env bash
# bench_imagenet_resume.sh: an ImageNet-shaped run that is killed mid-epoch and resumed, with the
# workers' peak resident memory against the bound they state.
#
#   bench/bench_imagenet_resume.sh [--build DIR] [--work DIR] [--classes C] [--per-class N]
#                                  [--micro-batch M] [--batch B] [--every-steps K]
#
# 1. `eigenbatch convert synthetic`: C classes x N JPEGs of 256x256 for training (default 100 x
#    20) and C x 2 for the test set.
# 2. `eigenbatch launch` (2 shard and 2 worker processes over ipc) trains resnet18 (ImageNet form)
#    at 224x224 with the ImageNet transforms of configs/imagenet-resnet18-absa.yaml, method BL,
#    one epoch, global batch B (default 32), micro-batch M (default 16), a checkpoint every K steps
#    (default 10). As soon as the first mid-epoch checkpoint is complete (its MANIFEST.json
#    exists), the whole run is killed with SIGKILL.
# 3. `eigenbatch launch --resume auto` continues from it and finishes the epoch (and the test
#    evaluation).
# Meanwhile every worker process's VmHWM (peak resident memory, /proc/PID/status) is sampled
# twice a second; the result is one JSON line: each part's time and steps, the workers' largest
# peak and the smallest bound they stated in their logs ("worker: memory bound X MiB"), the
# step the epoch ended at (its ceil(samples / B) steps) and the test accuracy. Exits 1 when a part fails, the epoch is not complete,
# or a peak exceeds the bound.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build
work=runs/bench-imagenet-resume
classes=100
per_class=20
micro=16
batch=32
every=10
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --classes) classes="$2"; shift 2 ;;
    --per-class) per_class="$2"; shift 2 ;;
    --micro-batch) micro="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --every-steps) every="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench_imagenet_resume.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
eb=$build/eigenbatch
[ -x "$eb" ] || { echo "bench_imagenet_resume.sh: $eb not built" >&2; exit 2; }
rm -rf "$work"
mkdir -p "$work"
"$eb" convert synthetic --out "$work/train" --classes "$classes" --per-class "$per_class" \
    --size 256x256 --format jpeg --seed 1 >/dev/null 2>&1 || exit 1
"$eb" convert synthetic --out "$work/test" --classes "$classes" --per-class 2 \
    --size 256x256 --format jpeg --seed 2 >/dev/null 2>&1 || exit 1

args=(--config configs/imagenet-resnet18-absa.yaml --set "model.classes=$classes"
      --set "data.train=$work/train" --set "data.test=$work/test" --set schedule.method=BL
      --set "schedule.batch=$batch" --set schedule.base_batch=256 --set schedule.epochs=1 --set "schedule.decay_epochs=[]"
      --set "train.micro_batch=$micro" --set data.loader_threads=1 --set data.prefetch=2
      --set "checkpoint.every_steps=$every" --set checkpoint.every_minutes=0
      --set train.progress_s=30 --set cluster.transport=ipc --output-dir "$work/out")

# Largest VmHWM (kB) of the worker processes below pid $1 until it exits, into file $2.
sample_peak() {
    local root=$1 file=$2 peak=0
    while kill -0 "$root" 2>/dev/null; do
        for p in $(pgrep -P "$root"); do
            { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q ' worker ' || continue
            local kb
            kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
            [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
        done
        echo "$peak" >"$file"
        sleep 0.5
    done
}

# Part 1: start, wait for a complete mid-epoch checkpoint, kill everything.
t0=$(date +%s.%N)
setsid "$eb" launch "${args[@]}" >"$work/part1.log" 2>&1 &
pid1=$!
sample_peak "$pid1" "$work/peak1" &
killed=0
while kill -0 "$pid1" 2>/dev/null; do
    if ls "$work"/out/checkpoints/epoch-000000-step-*/MANIFEST.json >/dev/null 2>&1 ||
       ls "$work"/out/*/epoch-000000-step-*/MANIFEST.json >/dev/null 2>&1; then
        kill -KILL -- "-$pid1" 2>/dev/null
        killed=1
        break
    fi
    sleep 0.5
done
wait "$pid1" 2>/dev/null
t1=$(date +%s.%N)
wait
if [ "$killed" != 1 ]; then
    echo "bench_imagenet_resume.sh: the run ended before a mid-epoch checkpoint ($work/part1.log)" >&2
    exit 1
fi

# Part 2: resume from the newest complete checkpoint and finish.
setsid "$eb" launch "${args[@]}" --resume auto >"$work/part2.log" 2>&1 &
pid2=$!
sample_peak "$pid2" "$work/peak2" &
wait "$pid2"
rc2=$?
t2=$(date +%s.%N)
wait

/usr/bin/python3 - "$work" "$rc2" "$t0" "$t1" "$t2" "$classes" "$per_class" "$batch" <<'EOF'
import glob, json, re, sys
work, rc2 = sys.argv[1], int(sys.argv[2])
t0, t1, t2 = (float(x) for x in sys.argv[3:6])
n_train = int(sys.argv[6]) * int(sys.argv[7])
steps = -(-n_train // int(sys.argv[8]))  # the epoch's steps: ceil(samples / global batch)
bounds = []
for part in ("part1", "part2"):
    for line in open("%s/%s.log" % (work, part), errors="replace"):
        m = re.search(r"memory bound ([0-9.]+) MiB", line)
        if m and "worker" in line:
            bounds.append(float(m.group(1)))
peaks = [int(open("%s/%s" % (work, p)).read().strip() or 0) / 1024.0
         for p in ("peak1", "peak2")]
events = [json.loads(l) for l in open(work + "/out/metrics.jsonl") if l.strip()]
resume = [e for e in events if e.get("event") == "resume"]
epochs = [e for e in events if e.get("event") == "epoch"]
out = {
    "killed_after_s": round(t1 - t0, 1), "resumed_run_s": round(t2 - t1, 1),
    "resume_events": len(resume), "resumed_from": resume[0].get("checkpoint") if resume else None,
    "epoch_events": len(epochs),
    "test_accuracy": epochs[-1].get("test_accuracy") if epochs else None,
    "epoch_end_step": epochs[-1].get("step") if epochs else None, "epoch_steps": steps,
    "train_samples": n_train,
    "worker_peak_mib": [round(p, 1) for p in peaks],
    "worker_bound_mib": min(bounds) if bounds else None,
}
ok = (rc2 == 0 and len(epochs) == 1 and epochs[0].get("step") == steps and len(resume) == 1
      and bounds and max(peaks) <= min(bounds))
out["ok"] = bool(ok)
print(json.dumps(out))
sys.exit(0 if ok else 1)
EOF
