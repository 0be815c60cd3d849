#!/bin/bash
# ICN's wall time against the baseline's (issue 14): the introspective trainer on core 0 and one
# synthesizer on core 1 (one thread each, the pool unpinned), against the baseline trainer alone
# on core 0; 2,000 MNIST training images (seed 1), the default protocol unless flags say
# otherwise. Prints both wall times, their ratio, the wait per round (the trainer's metrics) and
# both test errors on the 10,000 test images. About 10 minutes on this project's machine.
#
#   tests/bench/icn-wall.sh [DIR] [-- TRAINER FLAGS...]    (DIR kept; default: a temporary one)
#   e.g. tests/bench/icn-wall.sh runs/wall -- --pn-batch 64
# The baseline trains as many steps as the ICN run did. A DIR that already holds its model for
# that many steps keeps it: the baseline does not depend on the introspective flags.
set -euo pipefail
case ${1:-} in -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
dir=
if [ $# -gt 0 ] && [ "$1" != -- ]; then dir=$1; shift; fi
if [ "${1:-}" = -- ]; then shift; fi
bin=${ICN_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
py=${PYTHON:-/usr/bin/python3}
[ "$(nproc)" -ge 2 ] || { echo "icn-wall: needs 2 cores (the trainer on core 0, a synthesizer on core 1)" >&2; exit 1; }
keep=1
if [ -z "$dir" ]; then dir=$(mktemp -d); keep=0; fi
mkdir -p "$dir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "$keep" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT
port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
[ -f "$dir/train.icn" ] || "$bin/icn-load" mnist --split train --limit 2000 --seed 1 --out "$dir/train.icn" --quiet
[ -f "$dir/test.icn" ] || "$bin/icn-load" mnist --split test --out "$dir/test.icn" --quiet

snap=tcp://127.0.0.1:$(port) push=tcp://127.0.0.1:$(port) req=tcp://127.0.0.1:$(port)
rm -f "$dir/pool.store" "$dir/icn.model" "$dir/icn.jsonl" "$dir/synth.jsonl"
"$bin/icn-pool" serve --store "$dir/pool.store" --shape 28x28x1 --classes 10 --pull "$push" --rep "$req" \
    --quiet 2>"$dir/pool.log" &
pids+=($!)
ICN_THREADS=1 taskset -c 1 "$bin/icn-synthesize" --snapshots "$snap" --pool "$push" --id 1 --seed 1 --threads 1 \
    --metrics "$dir/synth.jsonl" --quiet 2>"$dir/synth.log" &
pids+=($!)
t0=$(now)
taskset -c 0 "$bin/icn-classify" train --introspective --threads 1 --data "$dir/train.icn" --publish "$snap" \
    --pool "$req" --seed 1 --out "$dir/icn.model" --metrics "$dir/icn.jsonl" --quiet "$@"
icn_wall=$(echo "$(now) - $t0" | bc)
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

events() { # FILE EVENT FIELD: the field of every such event, one per line
    $py -c 'import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("event") == sys.argv[2] and sys.argv[3] in e: print(e[sys.argv[3]])' "$@"
}
steps=$(events "$dir/icn.jsonl" done steps)
if [ ! -f "$dir/base.model" ] || [ "$(cat "$dir/base.steps" 2>/dev/null)" != "$steps" ]; then
    t0=$(now)
    taskset -c 0 "$bin/icn-classify" train --threads 1 --steps "$steps" --data "$dir/train.icn" --seed 1 \
        --out "$dir/base.model" --metrics "$dir/base.jsonl" --quiet
    echo "$(now) - $t0" | bc >"$dir/base.wall"
    echo "$steps" >"$dir/base.steps"
fi
base_wall=$(cat "$dir/base.wall")
waits=$(events "$dir/icn.jsonl" round wait_s | awk '{ printf "%.1f ", $1; t += $1 } END { printf "(%.1f s in all)", t }')
err() { "$bin/icn-eval" error --model "$1" --data "$dir/test.icn" | head -1 | sed 's/.*test error //'; }
printf 'machine: %s, %s cores; trainer flags: %s\n' "$( (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p' | head -1)" \
    "$(nproc)" "${*:-(defaults)}"
printf '  ICN (trainer on core 0, 1 synthesizer on core 1) %7.1f s   test error %s\n' "$icn_wall" "$(err "$dir/icn.model")"
printf '  baseline alone on core 0, %5d steps             %7.1f s   test error %s\n' "$steps" "$base_wall" "$(err "$dir/base.model")"
printf '  wait per round, s: %s\n' "$waits"
awk -v a="$icn_wall" -v b="$base_wall" 'BEGIN { r = a / b;
    printf "  ICN wall / baseline wall %.2fx (target <= 1.3: %s)\n", r, r <= 1.3 ? "met" : "NOT met" }'
