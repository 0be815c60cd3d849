#!/bin/bash
# The paper's adversarial experiment: FGSM examples both ways between a baseline and an ICN
# model (icn-eval fgsm). The test images a model classifies correctly are perturbed by
# eps * sign(input gradient of its loss); counted: how many fool that model, and how many of
# those also fool the other one; then the other way round. The models are trained here with
# pipelines/icn-mnist.sh's protocol and the trainer's defaults (800 initial steps, 6 rounds of
# 20 pseudo-negatives per class and 200 steps, alpha 0.5, lr 0.025; the baseline with the same
# real-data schedule), or given. Each step is skipped when its result exists.
#
#   pipelines/adversarial.sh [--baseline-model FILE --icn-model FILE] [--train-images 55000]
#                            [--seed 1] [--eps 0.125] [--test-images N] [--synthesizers 2]
#                            [--dir runs/adversarial] [--quick] [-- TRAINER FLAGS...]
# Results: DIR/results.json (the counts both ways, the proportions, each model's test error)
# and DIR/results.md (the table, the machine, each command and its wall time). --eps is on
# the [0, 1] pixel scale (the paper's 0.125); --test-images N: a seeded subset of the 10,000
# test images (default all). --quick: 500 training images (unless --train-images is given), a
# tiny net and a short schedule (pipelines/lib.sh). TRAINER FLAGS override the protocol.
# Results are kept per --eps; other models or another --test-images need another --dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
base_model="" icn_model="" images="" seed=1 eps=0.125 test_images="" synths=2 dir=runs/adversarial quick=()
while [ $# -gt 0 ]; do
    case $1 in
    --baseline-model) base_model=$2; shift 2 ;; --icn-model) icn_model=$2; shift 2 ;;
    --train-images) images=$2; shift 2 ;; --seed) seed=$2; shift 2 ;; --eps) eps=$2; shift 2 ;;
    --test-images) test_images=$2; shift 2 ;; --synthesizers) synths=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --quick) quick=("${QUICK_TRAINER[@]}"); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "adversarial: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$base_model$icn_model" ]; then
    [ -n "$base_model" ] && [ -n "$icn_model" ] ||
        { echo "adversarial: --baseline-model and --icn-model go together" >&2; exit 2; }
    for m in "$base_model" "$icn_model"; do [ -s "$m" ] || { echo "adversarial: $m: no such model file" >&2; exit 1; }; done
fi
if [ ${#quick[@]} -gt 0 ]; then images=${images:-500}; fi
images=${images:-55000}
mkdir -p "$dir"
if [ -z "$base_model" ]; then
    run_step "$dir" train "$dir/train/baseline-eval.json" "$here/icn-mnist.sh" --train-images "$images" --seed "$seed" \
        --synthesizers "$synths" --dir "$dir/train" --port-base "$(free_port_base)" -- --quiet "${quick[@]}" "$@"
    base_model=$dir/train/baseline.model icn_model=$dir/train/icn.model
fi
limit=(); [ -n "$test_images" ] && limit=(--limit "$test_images" --seed 1)
run_step "$dir" test-data "$dir/test.icn" "$bin/icn-load" mnist --split test "${limit[@]}" --out "$dir/test.icn" --quiet
run_step --stdout "$dir" baseline-error "$dir/baseline-eval.json" "$bin/icn-eval" error --model "$base_model" \
    --data "$dir/test.icn" --json
run_step --stdout "$dir" icn-error "$dir/icn-eval.json" "$bin/icn-eval" error --model "$icn_model" --data "$dir/test.icn" --json
run_step --stdout "$dir" "fgsm-eps$eps" "$dir/fgsm-eps$eps.json" "$bin/icn-eval" fgsm --model-a "$base_model" \
    --model-b "$icn_model" --data "$dir/test.icn" --eps "$eps" --json
"$PYTHON" "$here/report.py" adversarial "$dir" --eps "$eps" --fgsm "$dir/fgsm-eps$eps.json" --command "$command"
