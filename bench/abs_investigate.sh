#!/usr/bin/env bash
# abs_investigate.sh: why ABS grows the batch less than the paper reports, on the paper comparison's
# ABS-2048 run (bench/paper_compare.sh: cnn on Fashion-MNIST, E = 20, decay at 10 and 15, 2 workers,
# 2 shards, eigen service, decisions sync). Each variant changes one thing of that run, and nothing
# is tuned: the question is what makes the measured top eigenvalue rise instead of fall.
#
#   bench/abs_investigate.sh [--variants "base wd0 ..."] [--force] [--dry-run]
#
# Variants (results in bench/results/paper/investigate/<variant>/<run>/metrics.jsonl; the eig
# events carry weight_norm and conv_weight_norm, the L2 norms of all parameters and of the
# convolution kernels, which all feed a BatchNorm):
#   base       the table's ABS-2048 again (adds the norms; sync decisions make it reproducible)
#   wd0        weight decay 0 instead of 5e-4, as HessianFlow's train.py (SGD, momentum 0.9 only)
#   bn-train   Hessian with BatchNorm in train mode (batch statistics) instead of eval mode
#   hb-1024    Hessian batch of 1024 samples instead of 128 (less sampling noise in lambda)
#   no-decay   no step decay of the learning rate (lr 0.05 throughout, times the ABS growth)
#   e60        bl-128 and abs-2048 with E = 60 (decay at 30 and 45, tau 30) instead of 20: how the
#              kappa timer's share of the growth depends on the number of epochs (HessianFlow's
#              example runs use 90); ~25 min for the pair
# Each takes about as long as ABS-2048 (5-8 min here; hb-1024 more: the eigen service's HVPs on
# 1024 samples while training waits for the decision). The report is bench/paper_report.py.
set -uo pipefail
cd "$(dirname "$0")/.."

variants="base wd0 bn-train hb-1024 no-decay e60"
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
    --variants) variants="${2//,/ }"; shift 2 ;;
    --force|--dry-run) pass+=("$1"); shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "abs_investigate.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

status=0
for v in $variants; do
    runs=abs-2048
    epochs=20
    case "$v" in
    base) extra="" ;;
    wd0) extra="schedule.weight_decay=0" ;;
    bn-train) extra="abs.bn=train" ;;
    hb-1024) extra="abs.hessian_batch=1024" ;;
    no-decay) extra="schedule.decay_epochs=[]" ;;
    e60) extra="" runs="bl-128 abs-2048" epochs=60 ;;
    *) echo "abs_investigate.sh: unknown variant '$v'" >&2; status=2; continue ;;
    esac
    echo "=== variant $v: ${extra:-(no change)}, $epochs epochs"
    bench/paper_compare.sh --runs "$runs" --epochs "$epochs" --out "bench/results/paper/investigate/$v" \
        --work "runs/paper-investigate/$v" --extra "$extra" "${pass[@]}" || status=1
done
exit $status
