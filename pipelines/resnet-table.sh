#!/bin/bash
# The paper's ResNet-32 tables: baseline vs ICN (softmax head) on CIFAR-10 (Table 3, with and
# without data augmentation) or SVHN (Table 4, train + extra, no augmentation). Called by
# pipelines/table3.sh and pipelines/table4.sh, which fix --dataset and --variants.
#
#   pipelines/resnet-table.sh --dataset cifar10|svhn [--variants "aug plain"] [--data-dir DIR]
#                             [--split SPLIT] [--train-images N|all] [--seeds "1"] [--synthesizers 2]
#                             [--dir DIR] [--quick] [-- TRAINER FLAGS...]
# Full protocol (this project's, for 2 cores it is days; see README): resnet32, batches of 128
# real images plus 32 pseudo-negatives, SGD lr 0.1, momentum 0.9, weight decay 1e-4, lr /10 at
# 50% and 75%; 32,000 initial steps, then 8 rounds of 100 pseudo-negatives per class and 4,000
# steps (64,000 steps, 164 epochs of CIFAR-10's 50,000 images). The baseline gets the same
# real batches for the same steps. Variant "aug" adds --augment (pad 4, random crop, flip).
# --quick: resnet8 on small files in the real formats made by build/tests/gen_datasets (unless
# --data-dir is given), a few dozen steps: a minute or two, for the tests.
# Results: DIR/results.json and DIR/results.md (the table, machine, commands, wall times).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
dataset="" variants="" data_dir="" split="" images=all seeds=1 synths=2 dir="" quick=0
while [ $# -gt 0 ]; do
    case $1 in
    --dataset) dataset=$2; shift 2 ;; --variants) variants=$2; shift 2 ;; --data-dir) data_dir=$2; shift 2 ;;
    --split) split=$2; shift 2 ;; --train-images) images=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;;
    --synthesizers) synths=$2; shift 2 ;; --dir) dir=$2; shift 2 ;; --quick) quick=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "resnet-table: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $dataset in
cifar10) split=${split:-all} variants=${variants:-"aug plain"} ;;
svhn) split=${split:-train+extra} variants=${variants:-plain} ;;
*) echo "resnet-table: --dataset: '$dataset' is not cifar10 or svhn" >&2; exit 2 ;;
esac
for v in $variants; do
    case $v in aug|plain) ;; *) echo "resnet-table: --variants: '$v' is not aug or plain" >&2; exit 2 ;; esac
done
dir=${dir:-runs/$dataset}
mkdir -p "$dir"
if [ "$quick" = 1 ]; then
    protocol=(--arch resnet8 --batch 16 --pn-batch 8 --lr 0.05 --weight-decay 1e-4 --initial-steps 30 --rounds 2
              --round-steps 15 --per-class 2)
    if [ -z "$data_dir" ]; then
        gen=$bin/../tests/gen_datasets
        [ -x "$gen" ] || { echo "resnet-table: --quick needs $gen (make) or --data-dir" >&2; exit 1; }
        data_dir=$dir/data
        [ -d "$data_dir" ] || "$gen" "${dataset/cifar10/cifar}" "$data_dir" 40
    fi
else
    protocol=(--arch resnet32 --batch 128 --pn-batch 32 --lr 0.1 --weight-decay 1e-4 --decay-at 0.5,0.75
              --initial-steps 32000 --rounds 8 --round-steps 4000 --per-class 100)
fi
data=(--dataset "$dataset" --split "$split"); [ -n "$data_dir" ] && data+=(--data-dir "$data_dir")
for v in $variants; do
    for s in $seeds; do
        trainer=(--quiet "${protocol[@]}"); [ "$v" = aug ] && trainer+=(--augment)
        run_step "$dir" "$v-s$s" "$dir/$v-s$s/baseline-eval.json" "$here/icn-mnist.sh" "${data[@]}" \
            --train-images "$images" --seed "$s" --synthesizers "$synths" --dir "$dir/$v-s$s" \
            --port-base "$(free_port_base)" -- "${trainer[@]}" "$@"
    done
done
"$PYTHON" "$here/report.py" resnet "$dir" --dataset "$dataset" --variants "$variants" --seeds "$seeds" --command "$command"
