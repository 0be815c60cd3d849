#!/bin/bash
# A baseline with the real-data schedule of an introspective run in DIR (pipelines/icn-mnist.sh):
# the same training images (DIR/train.icn), the same seed, as many SGD steps of real batches
# as the ICN trainer took (the last step in DIR/icn.jsonl), no pseudo-negatives; then its
# test error on DIR/test.icn. Skipped when DIR/NAME-eval.json exists.
#
#   pipelines/baseline.sh --run DIR --seed S [--name NAME] [--val FILE] [-- TRAINER FLAGS...]
# Writes DIR/NAME.model and DIR/NAME-eval.json (icn-eval error --json); NAME defaults to
# baseline. --val FILE: also keep the model with the lowest error on FILE at the evaluation
# points (icn-classify train --keep-best) as DIR/NAME-best.model, with DIR/NAME-best-eval.json,
# and the validation errors in DIR/NAME.jsonl.
# Round flags among the trainer flags (--rounds, --per-class, ...) are accepted and ignored
# by a plain run, so an ICN run's flags can be passed as they are; add, say,
# --label-smoothing 0.1 for another baseline.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run="" seed="" name=baseline val=()
while [ $# -gt 0 ]; do
    case $1 in
    --run) run=$2; shift 2 ;; --seed) seed=$2; shift 2 ;; --name) name=$2; shift 2 ;;
    --val) val=(--val "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "baseline: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$run" ] && [ -n "$seed" ] || { echo "baseline: --run DIR and --seed S are required (see --help)" >&2; exit 2; }
[ -s "$run/$name-eval.json" ] && exit 0
[ ${#val[@]} = 0 ] || val+=(--keep-best "$run/$name-best.model" --metrics "$run/$name.jsonl")
for f in train.icn test.icn icn.jsonl; do
    [ -s "$run/$f" ] || { echo "baseline: $run/$f: missing (run pipelines/icn-mnist.sh --dir $run first)" >&2; exit 1; }
done
steps=$("$PYTHON" -c 'import json, sys
print(max(json.loads(l).get("step", 0) for l in open(sys.argv[1])))' "$run/icn.jsonl")
[ "$steps" -gt 0 ] || { echo "baseline: $run/icn.jsonl: no training step recorded" >&2; exit 1; }
if [ ! -s "$run/$name.model" ]; then
    rm -f "$run/$name.jsonl" # metrics of a run that did not finish
    "$bin/icn-classify" train --data "$run/train.icn" --seed "$seed" "$@" "${val[@]}" \
        --steps "$steps" --out "$run/$name.model" --quiet
fi
[ ${#val[@]} = 0 ] || eval_json "$run/$name-best.model" "$run/test.icn" "$run/$name-best-eval.json"
eval_json "$run/$name.model" "$run/test.icn" "$run/$name-eval.json" # last: it marks the baseline done
