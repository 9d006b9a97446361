#!/usr/bin/env bash
# Data loader throughput on one core, side by side with Python PIL, in one run:
#   1. Fashion-MNIST (raw 1x28x28 LMDB records), training augmentation: random crop with 4 pixels
#      of padding + horizontal flip, NCHW float32 output.
#   2. JPEG records (generated 500x375 photographs stored encoded), decode + random-resized crop
#      to 224x224 + flip; PIL (bench/pil_loader.py) does the same decode and crop.
#   3. The ImageNet training transform: the same plus ImageNet mean/std normalisation, against
#      torchvision's pipeline (PIL decode, RandomResizedCrop(224), RandomHorizontalFlip, ToTensor,
#      Normalize; bench/pil_loader.py, when python3-torchvision is installed).
#   4. The ImageNet evaluation transform: decode + Resize(256) + CenterCrop(224) + Normalize,
#      eigenbatch decoding only the window its resize reads, eigenbatch decoding the whole JPEG
#      (EB_JPEG_FULL_DECODE=1: same bytes) and torchvision, back to back each round.
# Everything runs pinned to one CPU (taskset) with the loader decoding on the calling thread, and
# rates are images per CPU-second. On a shared machine the load changes between two programs run
# one after the other, so rows 3 and 4 run ROUNDS times, the programs back to back each round,
# and report every round's ratios and their median.
#
# usage: bench/bench_loader.sh [BUILD_DIR]   (default: build; needs `eigenbatch` built there)
# env:   JPEGS (default 500) images generated; FM_SAMPLES (300000), JPEG_SAMPLES (2000) timed;
#        ROUNDS (3) rounds of row 3.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
eb="$build/eigenbatch"
py=/usr/bin/python3
jpegs=${JPEGS:-500}
fm_samples=${FM_SAMPLES:-300000}
jpeg_samples=${JPEG_SAMPLES:-2000}
rounds=${ROUNDS:-3}
cpu=${CPU:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT


bench=(bench loader)

"$eb" convert fashion-mnist --in /usr/share/datasets/fashion-mnist --out "$tmp/fm" 2>/dev/null
"$py" bench/gen_jpegs.py "$tmp/jpg/train" "$jpegs"
"$eb" convert imagefolder --in "$tmp/jpg" --out "$tmp/jpgdb" 2>/dev/null

run() { taskset -c "$cpu" "$@"; }
rate() { sed -n 's/.*, \([0-9]*\) images per CPU-second.*/\1/p'; }

fm=$(run "$eb" "${bench[@]}" --db "$tmp/fm" --threads 0 --batch 256 --crop-pad 4 --flip \
        --warmup 10000 --samples "$fm_samples")
jp=$(run "$eb" "${bench[@]}" --db "$tmp/jpgdb" --threads 0 --batch 64 --rrc 224x224 --flip \
        --warmup 512 --samples "$jpeg_samples")
pil=$(OMP_NUM_THREADS=1 run "$py" bench/pil_loader.py "$tmp/jpg" "$jpeg_samples")
# row 3: rounds of eigenbatch then torchvision, back to back
ratios=()
rounds_md=
for r in $(seq "$rounds"); do
    jpn=$(run "$eb" "${bench[@]}" --db "$tmp/jpgdb" --threads 0 --batch 64 --rrc 224x224 --flip \
            --normalize --warmup 512 --samples "$jpeg_samples")
    tv=$(OMP_NUM_THREADS=1 run "$py" bench/pil_loader.py "$tmp/jpg" "$jpeg_samples" torchvision)
    a=$(echo "$jpn" | rate)
    b=$(echo "$tv" | sed -n 's/.*Normalize: \([0-9]*\) images per CPU-second.*/\1/p')
    [ -n "$b" ] || break # no torchvision
    echo "$jpn"
    echo "$tv"
    ratios+=("$(awk "BEGIN{printf \"%.2f\", $a/$b}")")
    rounds_md+="${rounds_md:+, }$a / $b = ${ratios[-1]}x"
done
# row 4: rounds of eigenbatch (window decode), eigenbatch (whole decode), torchvision
ev_win=() ev_tv=() ev_md=
for r in $(seq "$rounds"); do
    ew=$(run "$eb" "${bench[@]}" --db "$tmp/jpgdb" --threads 0 --batch 64 --eval 224x224 \
            --eval-resize 256 --normalize --warmup 512 --samples "$jpeg_samples")
    ef=$(EB_JPEG_FULL_DECODE=1 run "$eb" "${bench[@]}" --db "$tmp/jpgdb" --threads 0 --batch 64 \
            --eval 224x224 --eval-resize 256 --normalize --warmup 512 --samples "$jpeg_samples")
    et=$(OMP_NUM_THREADS=1 run "$py" bench/pil_loader.py "$tmp/jpg" "$jpeg_samples" torchvision-eval)
    a=$(echo "$ew" | rate)
    f=$(echo "$ef" | rate)
    b=$(echo "$et" | sed -n 's/.*Normalize: \([0-9]*\) images per CPU-second.*/\1/p')
    echo "$ew"
    echo "$ef"
    echo "$et"
    ev_win+=("$(awk "BEGIN{printf \"%.2f\", $a/$f}")")
    if [ -n "$b" ]; then
        ev_tv+=("$(awk "BEGIN{printf \"%.2f\", $a/$b}")")
        ev_md+="${ev_md:+, }$a / $f / $b"
    else
        ev_md+="${ev_md:+, }$a / $f / -"
    fi
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'; }
ev_win_med=$(med "${ev_win[@]}")
ev_tv_med=$([ ${#ev_tv[@]} -gt 0 ] && med "${ev_tv[@]}" || echo -)
fm_rate=$(echo "$fm" | rate)
jp_rate=$(echo "$jp" | rate)
pil_rate=$(echo "$pil" | sed -n 's/.*flip: \([0-9]*\) images per CPU-second.*/\1/p')
pilf_rate=$(echo "$pil" | sed -n 's/.*CHW \/255: \([0-9]*\) images per CPU-second.*/\1/p')
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}')
jpeg_kb=$(du -sk "$tmp/jpg" | cut -f1)

echo "$fm"
echo "$jp"
echo "$pil"
echo
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), pinned to CPU $cpu;" \
     "$jpegs JPEGs 500x375 q90, $((jpeg_kb / jpegs)) KiB average"
echo
echo "| workload (one core) | eigenbatch loader | PIL | ratio | target |"
echo "|---|---|---|---|---|"
echo "| Fashion-MNIST raw LMDB, crop pad 4 + flip, float32 NCHW | $fm_rate img/s | - | - | >= 50,000 img/s |"
echo "| JPEG 500x375 decode + random-resized crop 224x224 + flip | $jp_rate img/s | $pil_rate img/s | $(awk "BEGIN{printf \"%.2fx\", $jp_rate/$pil_rate}") | >= 1.0x PIL |"
echo "| same, PIL also converting to float32 CHW /255 (as the loader outputs) | $jp_rate img/s | $pilf_rate img/s | $(awk "BEGIN{printf \"%.2fx\", $jp_rate/$pilf_rate}") | |"
if [ -n "$median" ]; then
    echo "| ImageNet training transform: decode + RandomResizedCrop 224 + flip + ToTensor + Normalize | rounds (img/s ours / torchvision): $rounds_md | | median ${median}x | >= 2.0x torchvision |"
fi
echo "| ImageNet evaluation transform: decode + Resize 256 + CenterCrop 224 + ToTensor + Normalize | rounds (img/s window decode / whole decode / torchvision): $ev_md | | median window/whole ${ev_win_med}x, window/torchvision ${ev_tv_med}x | |"
