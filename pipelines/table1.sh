#!/bin/bash
# The paper's Table 1: MNIST test error of the baseline, the baseline with label smoothing,
# ICN-noise and ICN, with the one-vs-all head and with the softmax head (icn-classify
# --head ova|softmax). The protocol is pipelines/icn-mnist.sh's with the trainer's defaults
# (800 initial steps, 6 rounds of 20 pseudo-negatives per class and 200 steps, alpha 0.5,
# lr 0.025); every baseline gets its ICN run's real-data schedule. Each run is skipped when
# its result exists, so the script resumes where it stopped.
#
#   pipelines/table1.sh [--train-images 55000] [--seeds "1"] [--heads "ova softmax"]
#                       [--label-smoothing 0.1] [--synthesizers 2] [--dir runs/table1]
#                       [--jobs 1] [--quick] [-- TRAINER FLAGS...]
# Results: DIR/results.json (every run, mean/sd per cell, and each method against its head's
# baseline image by image with McNemar's exact p pooled over the seeds, from
# DIR/compare-HEAD-METHOD.json of icn-eval compare) and DIR/results.md (the tables, the
# machine, each run's command and wall time). The trainer's label smoothing is for the
# softmax head, so that cell is n/a for one-vs-all. --quick: 500 training images (unless
# --train-images is given), a tiny net and a short schedule (pipelines/lib.sh): a few minutes
# on 2 cores. --jobs N: up to N runs at once (give each trainer its share of the cores with
# -- --threads T); a failed run is named at the end and the others go on. TRAINER FLAGS (such as --rounds 3) override the protocol for every run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
images="" seeds=1 heads="ova softmax" eps=0.1 synths=2 dir=runs/table1 quick=() jobs=1
while [ $# -gt 0 ]; do
    case $1 in
    --train-images) images=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;; --heads) heads=$2; shift 2 ;;
    --label-smoothing) eps=$2; shift 2 ;; --synthesizers) synths=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --quick) quick=("${QUICK_TRAINER[@]}"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "table1: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for h in $heads; do
    case $h in ova|softmax) ;; *) echo "table1: --heads: '$h' is not ova or softmax" >&2; exit 2 ;; esac
done
if [ ${#quick[@]} -gt 0 ]; then images=${images:-500}; fi
images=${images:-55000}
jobs_init table1 "$jobs" "$dir"
mkdir -p "$dir"
icn_run() { # HEAD SEED TRAINER-FLAGS...: ICN with its baseline, then (softmax) label smoothing on its schedule
    local h=$1 s=$2 run="$dir/$1-s$2-icn"
    shift 2
    run_step "$dir" "$h-s$s-icn" "$run/baseline-eval.json" "$here/icn-mnist.sh" --train-images "$images" --seed "$s" \
        --synthesizers "$synths" --dir "$run" --port-base "$(free_port_base)" -- "$@" || return 1
    [ "$h" = softmax ] || return 0
    run_step "$dir" "$h-s$s-smooth" "$run/smooth-eval.json" "$here/baseline.sh" --run "$run" --seed "$s" \
        --name smooth -- "$@" --label-smoothing "$eps"
}
noise_run() { # HEAD SEED TRAINER-FLAGS...
    local h=$1 s=$2
    shift 2
    run_step "$dir" "$h-s$s-noise" "$dir/$h-s$s-noise/icn-eval.json" "$here/icn-mnist.sh" --train-images "$images" \
        --seed "$s" --synthesizers "$synths" --dir "$dir/$h-s$s-noise" --port-base "$(free_port_base)" --noise \
        --no-baseline -- "$@"
}
for h in $heads; do
    for s in $seeds; do
        trainer=(--quiet --head "$h" "${quick[@]}" "$@")
        spawn "$h-s$s-icn" icn_run "$h" "$s" "${trainer[@]}"
        spawn "$h-s$s-noise" noise_run "$h" "$s" "${trainer[@]}"
    done
done
jobs_finish
for h in $heads; do # each method against its head's baseline, image by image, pooled over the seeds
    for m in icn noise smooth; do
        pairs=()
        for s in $seeds; do
            case $m in
            icn) model="$dir/$h-s$s-icn/icn.model" ;; noise) model="$dir/$h-s$s-noise/icn.model" ;;
            smooth) model="$dir/$h-s$s-icn/smooth.model" ;;
            esac
            pairs+=("$dir/$h-s$s-icn/baseline.model" "$model")
        done
        compare_pairs "$dir/compare-$h-$m.json" "${pairs[@]}"
    done
done
"$PYTHON" "$here/report.py" table1 "$dir" --heads "$heads" --seeds "$seeds" --smoothing "$eps" --images "$images" \
    --command "$command"
