#!/bin/bash
# One run of the ResNet study (docs/RESULTS.md, "ICN on a ResNet: the study"): a variant of the
# introspective protocol against its own baseline on the same real batches, both judged on the
# validation split (the 5,000 training images that --split train leaves out), never the test set.
#
#   pipelines/resnet-study.sh --name VARIANT --seed S [--train-images N] [--dir DIR]
#                             [--synthesizers N] [--synth-args "FLAGS"] [-- TRAINER FLAGS...]
#   pipelines/resnet-study.sh --table [--dir DIR]
# TRAINER FLAGS go to the introspective trainer as they are (pipelines/icn-mnist.sh). The
# baseline gets the same flags less the introspective ones (--alpha, --pn-batch, --pn-recent, --bn-pseudo,
# --per-class, --async, --no-prefetch; the round schedule only sets its number of steps), so
# variants that differ only in those share one baseline per seed: DIR/base-KEY-sS, KEY a hash
# of what the baseline depends on. Defaults: 2,000 images, DIR runs/resnet-study.
# A finished run is not run again; a killed one resumes from its checkpoints.
# Appends one JSON line per finished run to DIR/table.jsonl: variant, seed, images, flags, both
# validation errors, the images only one of them gets wrong, McNemar's exact p, the fraction
# of each round's pseudo-negatives that reached the stop rule, the wall time. --table prints
# them as a markdown table, in the order they finished.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
name="" seed="" images=2000 root=runs/resnet-study synths=2 synth_args="" table=0
while [ $# -gt 0 ]; do
    case $1 in
    --table) table=1; shift ;;
    --name) name=$2; shift 2 ;; --seed) seed=$2; shift 2 ;; --train-images) images=$2; shift 2 ;;
    --dir) root=$2; shift 2 ;; --synthesizers) synths=$2; shift 2 ;; --synth-args) synth_args=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "resnet-study: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$table" = 1 ]; then
    [ -s "$root/table.jsonl" ] || { echo "resnet-study: $root/table.jsonl: no finished run" >&2; exit 1; }
    exec "$PYTHON" - "$root/table.jsonl" <<'PY'
import json, sys
print("| variant | seed | images | trainer flags | synthesis flags | baseline val | ICN val "
      "| only baseline / only ICN wrong | McNemar p | reached the stop rule, rounds 1.. |")
print("|---|---|---|---|---|---|---|---|---|---|")
for e in map(json.loads, open(sys.argv[1])):
    print("| %s | %d | %s | `%s` | %s | %.2f%% | %.2f%% | %d / %d | %.2g | %s |" % (
        e["variant"], e["seed"], e["images"], e["flags"], e["synth_args"] or "default",
        100 * e["baseline_val"], 100 * e["icn_val"], e["only_baseline_wrong"], e["only_icn_wrong"], e["p"],
        " ".join("%.0f%%" % (100 * r) for r in e["reached"])))
PY
fi
[ -n "$name" ] && [ -n "$seed" ] || { echo "resnet-study: --name and --seed are required (see --help)" >&2; exit 2; }
[[ "$name" =~ ^[A-Za-z0-9._+-]+$ ]] || { echo "resnet-study: --name: '$name' is not a plain word" >&2; exit 2; }
flags=("$@")
# The baseline's flags: the trainer flags less the introspective ones; its steps: the schedule's.
base=() initial=800 rounds=6 round_steps=200
i=0
while [ $i -lt ${#flags[@]} ]; do
    f=${flags[$i]} v=${flags[$((i + 1))]:-}
    case $f in
    --alpha|--pn-batch|--pn-recent|--bn-pseudo|--per-class|--wait-timeout) i=$((i + 2)) ;;
    --async|--no-prefetch) i=$((i + 1)) ;;
    --initial-steps) initial=$v; i=$((i + 2)) ;; --rounds) rounds=$v; i=$((i + 2)) ;;
    --round-steps) round_steps=$v; i=$((i + 2)) ;;
    *) base+=("$f"); i=$((i + 1)) ;;
    esac
done
steps=$((initial + rounds * round_steps))
key=$(printf '%s\n' "$images" "$steps" "${base[@]}" | md5sum | cut -c1-8)
run=$root/$name-s$seed bdir=$root/base-$key-s$seed
mkdir -p "$run" "$bdir"
printf '%s\n' "$(quoted "${base[@]}") --steps $steps" >"$bdir/flags"
start=$(date +%s)

# ICN: pool, synthesizers, trainer; evaluated on the validation split only
ICN_PORT_BASE=$(free_port_base) "$here/icn-mnist.sh" --no-baseline --eval-split val --train-images "$images" \
    --seed "$seed" --synthesizers "$synths" --synth-args "$synth_args" --dir "$run" -- --quiet "${flags[@]}" \
    >"$run/icn-mnist.log" 2>&1 || { echo "resnet-study: $name seed $seed failed; the end of $run/icn-mnist.log:" >&2
                                    tail -n 5 "$run/icn-mnist.log" >&2; exit 1; }
icn_wall=$(($(date +%s) - start))

# the baseline: the same training images and seed, the same real batches for the same steps
# (one at a time: runs of variants that share it may finish together)
exec 9>"$bdir/lock"
flock 9
if [ ! -s "$bdir/baseline-eval.json" ]; then
    cmp -s "$run/train.icn" "$bdir/train.icn" 2>/dev/null || cp "$run/train.icn" "$bdir/train.icn"
    cmp -s "$run/test.icn" "$bdir/test.icn" 2>/dev/null || cp "$run/test.icn" "$bdir/test.icn"
    "$bin/icn-classify" train --data "$bdir/train.icn" --seed "$seed" "${base[@]}" --steps "$steps" \
        --checkpoint "$bdir/baseline.ckpt" --resume --metrics "$bdir/baseline.jsonl" --out "$bdir/baseline.model" --quiet
    eval_json "$bdir/baseline.model" "$bdir/test.icn" "$bdir/baseline-eval.json"
fi
cmp -s "$run/train.icn" "$bdir/train.icn" || { echo "resnet-study: $run and $bdir trained on different images" >&2; exit 1; }
compare_pairs "$run/compare-val.json" "$bdir/baseline.model" "$run/icn.model"

"$PYTHON" - "$name" "$seed" "$images" "$(quoted "${flags[@]}")" "$synth_args" "$bdir" "$run" "$icn_wall" \
    >>"$root/table.jsonl" <<'PY'
import json, sys, time
name, seed, images, flags, synth, bdir, run, wall = sys.argv[1:]
err = lambda f: json.load(open(f))["error"]
cmp = json.load(open(run + "/compare-val.json"))["pooled"]
reached = [round(e["reached_fraction"], 3) for e in map(json.loads, open(run + "/icn.jsonl"))
           if e.get("event") == "round"]
print(json.dumps({"variant": name, "seed": int(seed), "images": images, "flags": flags, "synth_args": synth,
                  "baseline_val": err(bdir + "/baseline-eval.json"), "icn_val": err(run + "/icn-eval.json"),
                  "only_baseline_wrong": cmp["only_a_wrong"], "only_icn_wrong": cmp["only_b_wrong"],
                  "p": cmp["p_value"], "reached": reached, "baseline_dir": bdir, "icn_wall_s": int(wall),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
PY
tail -n 1 "$root/table.jsonl"
