#!/bin/bash
# The training-size experiment (issue 3 / the paper's Figure 3 protocol, softmax head):
# for each training-set size and seed, the baseline, ICN and ICN-noise with the same
# real-data schedule (800 initial steps, then 6 rounds of 20 pseudo-negatives per class and
# 200 steps; 2,000 steps of batch 64 on real data for every method; lr 0.025 decayed by 10 at
# 75%). Each run is skipped when its result exists, so the script resumes where it stopped.
#
#   pipelines/training-size.sh [--sizes "500 2000"] [--seeds "1 2 3"] [--dir runs/training-size]
#                              [--synthesizers N] [--clip-grad NORM] [--quick]
# Results: DIR/results.jsonl (one line per run) and DIR/results.md (means and deviations).
# --clip-grad applies to every method of the runs it starts and is recorded in each run's wall.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sizes="500 2000" seeds="1 2 3" dir=runs/training-size synths=2 quick=() clip=0
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) sizes=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --synthesizers) synths=$2; shift 2 ;; --clip-grad) clip=$2; shift 2 ;;
    --quick) quick=(--arch c16-c32 --initial-steps 100 --rounds 2 --round-steps 50 --per-class 5); shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "training-size: unknown flag '$1'" >&2; exit 2 ;;
    esac
done
mkdir -p "$dir"
for n in $sizes; do
    for s in $seeds; do
        for method in icn noise; do
            run="$dir/n$n-s$s-$method"
            [ -s "$run/icn-eval.json" ] && { [ "$method" = noise ] || [ -s "$run/baseline-eval.json" ]; } && continue
            start=$(date +%s)
            extra=(); [ "$method" = noise ] && extra=(--noise --no-baseline)
            "$here/icn-mnist.sh" --train-images "$n" --seed "$s" --synthesizers "$synths" --dir "$run" \
                --port-base $((6000 + RANDOM % 2000 * 3)) "${extra[@]}" -- --quiet --clip-grad "$clip" "${quick[@]}" >"$run.out" 2>&1
            echo "{\"images\":$n,\"seed\":$s,\"method\":\"$method\",\"clip_grad\":$clip,\"wall_s\":$(( $(date +%s) - start ))}" >"$run/wall.json"
        done
    done
done
/usr/bin/python3 - "$dir" "$sizes" "$seeds" <<'PY'
import json, os, sys, statistics as st
d, sizes, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows, out = [], open(os.path.join(d, "results.jsonl"), "w")
def err(path):
    return json.load(open(path))["error"] if os.path.exists(path) else None
def clip(run):
    p = os.path.join(d, run, "wall.json")
    return json.load(open(p)).get("clip_grad", 0) if os.path.exists(p) else 0
clipped = []
for n in sizes:
    table = {"baseline": [], "icn": [], "noise": []}
    for s in seeds:
        for method, path in (("baseline", f"n{n}-s{s}-icn/baseline-eval.json"), ("icn", f"n{n}-s{s}-icn/icn-eval.json"),
                             ("noise", f"n{n}-s{s}-noise/icn-eval.json")):
            e = err(os.path.join(d, path))
            if e is not None:
                c = clip(os.path.dirname(path))
                table[method].append(e)
                if c and (n, s) not in clipped: clipped.append((n, s))
                out.write(json.dumps({"images": int(n), "seed": int(s), "method": method, "error": e, "clip_grad": c}) + "\n")
    cells = []
    for m in ("baseline", "icn", "noise"):
        v = table[m]
        cells.append("%.2f%% ± %.2f (%d seeds)" % (100 * st.mean(v), 100 * (st.stdev(v) if len(v) > 1 else 0), len(v)) if v else "not run")
    rows.append(f"| {n} | " + " | ".join(cells) + " |")
md = "| training images | baseline | ICN | ICN-noise |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
if clipped:
    md += "\nGradient-norm clipping (every method) in: " + ", ".join("%s images seed %s" % c for c in clipped) + "\n"
open(os.path.join(d, "results.md"), "w").write(md)
print(md, end="")
PY
