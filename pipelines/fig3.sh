#!/bin/bash
# The paper's Figure 3: test error against training-set size, baseline and ICN, over seeds.
# Runs pipelines/training-size.sh (the protocol and its defaults are there; every run is
# skipped when its result exists, so this resumes where it stopped), then draws
# DIR/fig3.png with icn-eval plot (mean ± standard deviation over seeds, log-scale x).
#
#   pipelines/fig3.sh [--sizes "500 2000 10000 55000"] [--seeds "1 2 3"] [--dir runs/fig3]
#                     [--methods "icn"] [--synthesizers N] [--jobs 1] [--quick] [-- TRAINER FLAGS...]
# Results: DIR/results.jsonl (one line per run), DIR/results.md (the table, the figure, the
# machine, each run's command and wall time), DIR/fig3.png and DIR/fig3.gp (its gnuplot
# script). --methods "icn noise" adds ICN-noise. --jobs N: up to N runs at once (see
# training-size.sh). --quick: sizes "200 500", seeds "1 2" and
# training-size.sh's --quick (a tiny net, a short schedule): a few minutes on 2 cores; explicit
# --sizes and --seeds still apply. TRAINER FLAGS (such as --rounds 3) override the protocol.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
command=$(quoted "$0" "$@")
sizes="" seeds="" dir=runs/fig3 methods=icn synths=2 quick=() jobs=1
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) sizes=$2; shift 2 ;; --seeds) seeds=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;; --synthesizers) synths=$2; shift 2 ;; --jobs) jobs=$2; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "fig3: unknown flag '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ ${#quick[@]} -gt 0 ]; then sizes=${sizes:-"200 500"} seeds=${seeds:-"1 2"}; fi
sizes=${sizes:-"500 2000 10000 55000"} seeds=${seeds:-"1 2 3"}
"$here/training-size.sh" --sizes "$sizes" --seeds "$seeds" --dir "$dir" --methods "$methods" --synthesizers "$synths" \
    --jobs "$jobs" "${quick[@]}" -- "$@" >/dev/null
plot=("$bin/icn-eval" plot --out "$dir/fig3.png" --script "$dir/fig3.gp" --title "MNIST: test error against training-set size" \
    "$dir/results.jsonl")
"${plot[@]}"
"$PYTHON" "$here/report.py" training-size "$dir" --sizes "$sizes" --seeds "$seeds" --command "$command" \
    --figure fig3.png --plot-command "$(quoted "${plot[@]}")"
