#!/bin/bash
# The paper's Table 2: ICN's MNIST test error for each way of sampling pseudo-negatives:
# SGD and SGD-Langevin (icn-synthesize --method sgd|langevin), each with stop option 1
# (until classified positive), 2 (until the logit exceeds --threshold) and 3 (always
# --max-steps). The protocol is pipelines/icn-mnist.sh's with the trainer's defaults (800
# initial steps, 6 rounds of 20 pseudo-negatives per class and 200 steps, alpha 0.5, lr
# 0.025, softmax head); the baseline, trained in the first strategy's run, has the same
# real-data schedule. Each run is skipped when its result exists, so the script resumes.
#
#   pipelines/table2.sh [--train-images 55000] [--seeds "1"] [--synthesizers 2]
#                       [--strategies "sgd-1 sgd-2 sgd-3 langevin-1 langevin-2 langevin-3"]
#                       [--synth-args "FLAGS"] [--dir runs/table2] [--jobs 1] [--quick] [-- TRAINER FLAGS...]
# Results: DIR/results.json (every run: error, fraction of pseudo-negatives that met the stop
# rule, the trainer's wait for synthesis; each strategy against the baseline image by image
# with McNemar's exact p pooled over the seeds, from DIR/compare-STRATEGY.json of icn-eval
# compare) and DIR/results.md (the tables, the machine, each run's command and wall time). --synth-args: more icn-synthesize flags for every strategy,
# such as "--max-steps 50". --jobs N: up to N runs at once (each an independent trainer with
# its synthesizers and pool on its own ports; give each trainer its share of the cores with
# -- --threads T); a failed run is named at the end and the others go on. --quick: 500 training images (unless --train-images is given), a
# tiny net and a short schedule (pipelines/lib.sh): a few minutes on 2 cores. TRAINER FLAGS
# (such as --rounds 3) override the protocol for every run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
images="" seeds=1 synths=2 dir=runs/table2 quick=() synth_args="" jobs=1
strategies="sgd-1 sgd-2 sgd-3 langevin-1 langevin-2 langevin-3"
while [ $# -gt 0 ]; do
    case $1 in
    --train-images) images=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;; --synthesizers) synths=$2; shift 2 ;;
    --strategies) strategies=$2; shift 2 ;; --synth-args) synth_args=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --quick) quick=("${QUICK_TRAINER[@]}"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "table2: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for st in $strategies; do
    case $st in sgd-[123]|langevin-[123]) ;;
    *) echo "table2: --strategies: '$st' is not sgd-1..3 or langevin-1..3" >&2; exit 2 ;; esac
done
[ -n "${strategies// /}" ] || { echo "table2: --strategies: none given" >&2; exit 2; }
if [ ${#quick[@]} -gt 0 ]; then images=${images:-500}; fi
images=${images:-55000}
jobs_init table2 "$jobs" "$dir"
mkdir -p "$dir"
read -r -a strategy_list <<<"$strategies"
one_run() { # STRATEGY SEED TRAINER-FLAGS...
    local st=$1 s=$2
    shift 2
    local run="$dir/$st-s$s" extra=(--no-baseline) result="$dir/$st-s$s/icn-eval.json"
    [ "$st" = "${strategy_list[0]}" ] && extra=() result="$run/baseline-eval.json" # the baseline rides along
    run_step "$dir" "$st-s$s" "$result" "$here/icn-mnist.sh" --train-images "$images" --seed "$s" \
        --synthesizers "$synths" --dir "$run" --port-base "$(free_port_base)" "${extra[@]}" \
        --synth-args "--method ${st%-*} --stop ${st#*-}${synth_args:+ $synth_args}" -- --quiet "${quick[@]}" "$@"
}
for s in $seeds; do
    for st in $strategies; do
        spawn "$st-s$s" one_run "$st" "$s" "$@"
    done
done
jobs_finish
for st in $strategies; do # each strategy against the baseline, image by image, pooled over the seeds
    pairs=()
    for s in $seeds; do pairs+=("$dir/${strategy_list[0]}-s$s/baseline.model" "$dir/$st-s$s/icn.model"); done
    compare_pairs "$dir/compare-$st.json" "${pairs[@]}"
done
"$PYTHON" "$here/report.py" table2 "$dir" --strategies "$strategies" --seeds "$seeds" --images "$images" --command "$command"
