#!/bin/bash
# Introspective training on one machine (MNIST by default): an icn-pool, N icn-synthesize
# processes and the trainer (icn-classify train --introspective), talking over ZeroMQ on loopback.
# Prints the baseline's and ICN's test error side by side (the baseline sees the same real
# batches for the same number of steps), the images only one of them gets wrong and McNemar's
# exact p-value of that split (DIR/compare.json, icn-eval compare).
#
#   pipelines/icn-mnist.sh [--synthesizers N] [--train-images N] [--seed S] [--dir DIR]
#                          [--noise] [--no-baseline] [--port-base P] [--synth-args "FLAGS"]
#                          [--val FILE] [--eval-split SPLIT]
#                          [--dataset mnist|fashion|cifar10|svhn] [--data-dir DIR] [--split SPLIT]
#                          [-- TRAINER FLAGS...]
# --dataset/--data-dir/--split choose the training images (icn-load DATASET --dir DIR --split
# SPLIT, default train; --train-images then draws that many of them with the seed, or takes
# them all with --train-images all) and the test set (icn-load DATASET --split test).
# --val FILE: a labelled stream (say icn-load mnist --split val) evaluated during training; both
# ICN and the baseline also keep the model of lowest error on it (the paper stops training on
# validation error) as DIR/icn-best.model and DIR/baseline-best.model, which are then compared
# on the test set as well (DIR/icn-best-eval.json, DIR/compare-best.json).
# --eval-split SPLIT: the images every model is evaluated and compared on (DIR/test.icn), by
# default the test set; `--eval-split val` (the 5,000 training images that --split train leaves
# out) for choosing settings without touching the test set (pipelines/resnet-study.sh).
# --synth-args: extra icn-synthesize flags for every synthesizer, split at white space, such
# as "--method langevin --stop 3" (the sampling strategies of the paper's Table 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
synths=2 images=2000 seed=1 dir="" noise="" baseline=1 port=${ICN_PORT_BASE:-5560} synth_args=()
dataset=mnist data_dir=() split=train val="" eval_split=test
while [ $# -gt 0 ]; do
    case $1 in
    --synthesizers) synths=$2; shift 2 ;;
    --train-images) images=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --noise) noise=--noise; shift ;;
    --no-baseline) baseline=0; shift ;;
    --port-base) port=$2; shift 2 ;;
    --synth-args) read -r -a synth_args <<<"$2"; shift 2 ;;
    --val) val=$2; shift 2 ;;
    --eval-split) eval_split=$2; shift 2 ;;
    --dataset) dataset=$2; shift 2 ;; --data-dir) data_dir=(--dir "$2"); shift 2 ;; --split) split=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "icn-mnist: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
dir=${dir:-runs/icn-$dataset-n$images-s$seed${noise:+-noise}}
mkdir -p "$dir"
snap=tcp://127.0.0.1:$port push=tcp://127.0.0.1:$((port + 1)) req=tcp://127.0.0.1:$((port + 2))
keep_best=() base_val=()
[ -z "$val" ] || keep_best=(--val "$val" --keep-best "$dir/icn-best.model") base_val=(--val "$val")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

limit=(--limit "$images"); [ "$images" = all ] && limit=()
"$bin/icn-load" "$dataset" "${data_dir[@]}" --split "$split" "${limit[@]}" --seed "$seed" --out "$dir/train.icn" --quiet
case $eval_split in test|val) ;; *) echo "icn-mnist: --eval-split: '$eval_split' is not test or val" >&2; exit 2 ;; esac
[ "$eval_split" = test ] || [ "$split" != "$eval_split" ] || { echo "icn-mnist: --eval-split $eval_split is also the training split" >&2; exit 2; }
# DIR/test.icn holds the evaluation split; a directory made for the other split is refused
if [ -s "$dir/eval-split" ] && [ "$(cat "$dir/eval-split")" != "$eval_split" ]; then
    echo "icn-mnist: $dir was evaluated on '$(cat "$dir/eval-split")', not '$eval_split': use another --dir" >&2; exit 2
fi
echo "$eval_split" >"$dir/eval-split"
[ -s "$dir/test.icn" ] || "$bin/icn-load" "$dataset" "${data_dir[@]}" --split "$eval_split" --out "$dir/test.icn" --quiet

shape=$("$bin/icn-load" --info "$dir/train.icn" | sed -n 's/^shape: //p') # the pool's contract: the data's
"$bin/icn-pool" serve --store "$dir/pool.store" --shape "$shape" --classes 10 --pull "$push" --rep "$req" --quiet \
    2>>"$dir/pool.log" &
pids+=($!)
for i in $(seq 1 "$synths"); do
    "$bin/icn-synthesize" --snapshots "$snap" --pool "$push" --id "$i" --seed "$seed" --threads 1 $noise \
        "${synth_args[@]}" 2>>"$dir/synth-$i.log" &
    pids+=($!)
done

start=$(date +%s)
"$bin/icn-classify" train --introspective --data "$dir/train.icn" --publish "$snap" --pool "$req" --seed "$seed" \
    --checkpoint "$dir/icn.ckpt" --resume --out "$dir/icn.model" --metrics "$dir/icn.jsonl" "${keep_best[@]}" "$@"
icn_wall=$(( $(date +%s) - start ))
cleanup; pids=()

eval_json "$dir/icn.model" "$dir/test.icn" "$dir/icn-eval.json"
[ -z "$val" ] || eval_json "$dir/icn-best.model" "$dir/test.icn" "$dir/icn-best-eval.json"
if [ "$baseline" = 1 ]; then # the same real-data schedule, same seed, no pseudo-negatives
    "$here/baseline.sh" --run "$dir" --seed "$seed" "${base_val[@]}" -- "$@"
fi
pct() { "$PYTHON" -c 'import json,sys; print("%.2f%%" % (100*json.load(open(sys.argv[1]))["error"]))' "$1"; }
# compare_line WHICH BASELINE ICN OUT: which images each gets wrong that the other gets right,
# and McNemar's p of that split (icn-eval compare on DIR/test.icn into OUT), as one line
compare_line() {
    compare_pairs "$4" "$2" "$3"
    "$PYTHON" -c 'import json, sys; p = json.load(open(sys.argv[1]))["pooled"]
print("%s: only the baseline wrong on %d, only ICN on %d, McNemar exact p = %.3g"
      % (sys.argv[2], p["only_a_wrong"], p["only_b_wrong"], p["p_value"]))' "$4" "$1"
}
at="images $images seed $seed"
echo "$at synthesizers $synths${noise:+ (ICN-noise)}: ICN $eval_split error $(pct "$dir/icn-eval.json") (${icn_wall}s)"
[ -z "$val" ] || echo "$at: ICN $eval_split error $(pct "$dir/icn-best-eval.json") at its best validation point"
if [ "$baseline" = 1 ]; then
    echo "$at: baseline $eval_split error $(pct "$dir/baseline-eval.json")"
    compare_line "$at" "$dir/baseline.model" "$dir/icn.model" "$dir/compare.json"
    if [ -n "$val" ]; then
        echo "$at: baseline $eval_split error $(pct "$dir/baseline-best-eval.json") at its best validation point"
        compare_line "$at, best validation points" "$dir/baseline-best.model" "$dir/icn-best.model" \
            "$dir/compare-best.json"
    fi
fi
exit 0
