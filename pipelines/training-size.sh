#!/bin/bash
# The training-size experiment (issue 3 / the paper's Figure 3 protocol, softmax head):
# for each training-set size and seed, the baseline, ICN and ICN-noise with the same
# real-data schedule (800 initial steps, then 6 rounds of 20 pseudo-negatives per class and
# 200 steps; 2,000 steps of batch 64 on real data for every method; lr 0.025 decayed by 10 at
# 75%). Each run is skipped when its result exists, so the script resumes where it stopped.
#
#   pipelines/training-size.sh [--sizes "500 2000"] [--seeds "1 2 3"] [--dir runs/training-size]
#                              [--methods "icn noise"] [--synthesizers N] [--clip-grad NORM]
#                              [--jobs 1] [--quick] [-- TRAINER FLAGS...]
# Results: DIR/results.jsonl (one line per run) and DIR/results.md (means and deviations,
# ICN and ICN-noise against the baseline image by image with McNemar's exact p pooled over the
# seeds (DIR/compare-nN-METHOD.json, icn-eval compare), the machine, each run's command and
# wall time). --methods: icn (ICN and its baseline) and/or
# noise (ICN-noise). --clip-grad applies to every method of the runs it starts and is recorded
# in each run's wall.json. --jobs N: up to N runs at once (give each trainer its share of the
# cores with -- --threads T); a failed run is named at the end and the others go on. --quick: a tiny net and a short schedule (pipelines/lib.sh);
# TRAINER FLAGS (such as --rounds 3) come last and override both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
sizes="500 2000" seeds="1 2 3" dir=runs/training-size synths=2 quick=() clip=0 methods="icn noise" jobs=1
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) sizes=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --synthesizers) synths=$2; shift 2 ;; --clip-grad) clip=$2; shift 2 ;; --methods) methods=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --quick) quick=("${QUICK_TRAINER[@]}"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "training-size: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for method in $methods; do
    case $method in icn|noise) ;; *) echo "training-size: --methods: '$method' is not icn or noise" >&2; exit 2 ;; esac
done
jobs_init training-size "$jobs" "$dir"
mkdir -p "$dir"
one_run() { # IMAGES SEED METHOD TRAINER-FLAGS...
    local n=$1 s=$2 method=$3
    shift 3
    local run="$dir/n$n-s$s-$method" extra=() start
    local result="$run/baseline-eval.json"
    [ "$method" = noise ] && extra=(--noise --no-baseline) result="$run/icn-eval.json"
    [ -s "$result" ] && return 0
    start=$(date +%s)
    run_step "$dir" "n$n-s$s-$method" "$result" "$here/icn-mnist.sh" --train-images "$n" --seed "$s" \
        --synthesizers "$synths" --dir "$run" --port-base "$(free_port_base)" "${extra[@]}" \
        -- --quiet "${quick[@]}" --clip-grad "$clip" "$@" || return 1
    echo "{\"images\":$n,\"seed\":$s,\"method\":\"$method\",\"clip_grad\":$clip,\"wall_s\":$(( $(date +%s) - start ))}" >"$run/wall.json"
}
for n in $sizes; do
    for s in $seeds; do
        for method in $methods; do
            spawn "n$n-s$s-$method" one_run "$n" "$s" "$method" "$@"
        done
    done
done
jobs_finish
for n in $sizes; do # ICN and ICN-noise against the baseline, image by image, pooled over the seeds
    icn_pairs=() noise_pairs=()
    for s in $seeds; do
        icn_pairs+=("$dir/n$n-s$s-icn/baseline.model" "$dir/n$n-s$s-icn/icn.model")
        noise_pairs+=("$dir/n$n-s$s-icn/baseline.model" "$dir/n$n-s$s-noise/icn.model")
    done
    compare_pairs "$dir/compare-n$n-icn.json" "${icn_pairs[@]}"
    compare_pairs "$dir/compare-n$n-noise.json" "${noise_pairs[@]}"
done
"$PYTHON" "$here/report.py" training-size "$dir" --sizes "$sizes" --seeds "$seeds" --command "$command"
