#!/bin/bash
# make demo: the paper's effect in a few minutes on 2 cores. Introspective training on 500 real
# MNIST images (2 synthesizer processes, a pool and the trainer over ZeroMQ on loopback), then the
# baseline with the same real batches, both tested on the 10,000 test images and compared image by
# image (McNemar's exact p, icn-eval compare); the pseudo-negatives by generation as a PNG.
#
#   pipelines/demo.sh [--seed S] [--dir DIR] [-- TRAINER FLAGS...]
#
# The protocol is the training-size experiment's (docs/RESULTS.md: 800 steps on real data, then 6
# rounds of 20 pseudo-negatives per class and 200 steps; 2,000 steps of 64 real images for both)
# with a small net (--arch c16-c32: two 5x5 stride-2 convolutions of 16 and 32 channels) so that
# it fits in minutes, and --clip-grad 10. With it ICN was below the baseline in each of the 3 seeds
# tried (1, 2, 3), each with McNemar p < 2e-6 (docs/RESULTS.md, "make demo"). The paper's own net
# is pipelines/icn-mnist.sh's default. DIR (default runs/demo) is replaced when a demo made it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
seed=1 dir=runs/demo
while [ $# -gt 0 ]; do
    case $1 in
    --seed) seed=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "demo: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -e "$dir" ]; then # never delete what a demo did not make
    [ -e "$dir/.icn-demo" ] || { echo "demo: $dir exists and is not a demo's directory; give another --dir" >&2; exit 1; }
    rm -rf "$dir"
fi
mkdir -p "$dir"
touch "$dir/.icn-demo"
start=$(date +%s)
echo "demo: ICN and the baseline on 500 MNIST training images, seed $seed (a few minutes on 2 cores)"
"$here/icn-mnist.sh" --train-images 500 --synthesizers 2 --seed "$seed" --dir "$dir" \
    --port-base "$(free_port_base)" -- --arch c16-c32 --clip-grad 10 "$@" | tee "$dir/summary.txt"
# one row per generation, one column per class (icn-eval grid's layout for pseudo-negatives)
"$bin/icn-pool" dump --store "$dir/pool.store" | "$bin/icn-eval" grid --out "$dir/pseudo-negatives.png" --zoom 2
"$PYTHON" - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
c = json.load(open(d + "/compare.json"))["pooled"]
print("demo: ICN %s the baseline: %d test images only the baseline gets wrong, %d only ICN; McNemar exact p = %.3g"
      % ("beats" if c["only_a_wrong"] > c["only_b_wrong"] else "does not beat", c["only_a_wrong"], c["only_b_wrong"],
         c["p_value"]))
EOF
cat <<EOF
demo: took $(( $(date +%s) - start )) s. Files in $dir/:
  train.icn, test.icn          the 500 training images (seed $seed) and the 10,000 test images (tensor streams)
  icn.model, baseline.model    the two trained models (icn-eval error --model M --data $dir/test.icn)
  icn-eval.json, baseline-eval.json   their test errors, per class and the confusion matrix
  compare.json                 the image-by-image comparison and McNemar's exact p (icn-eval compare)
  pseudo-negatives.png         the pseudo-negatives, one row per generation, one column per class
  pool.store                   every pseudo-negative with its provenance (icn-pool dump --store ...)
  icn.jsonl                    the ICN trainer's metrics (JSON lines: steps, rounds, waits)
  icn.ckpt                     the ICN trainer's checkpoint
  pool.log, synth-1.log, synth-2.log, summary.txt   the processes' logs and the lines above
EOF
