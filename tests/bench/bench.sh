#!/bin/bash
# make bench: icn-classify against Debian's python3-torch, same net, same batch, same cores.
# Prints images per second for both and their ratio, and the sgemm bound beside them.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bin
steps=${BENCH_STEPS:-300}
threads=${ICN_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "bench: the reference needs Debian's python3-torch: apt-get install -y python3-torch" >&2
    exit 1
fi
"$bin/icn-load" mnist --split train --limit 2000 --seed 1 --out "$tmp/train.icn" --quiet
# the OPENBLAS_* variables set on some machines are left as they are: both sides use them
t0=$(date +%s.%N)
ICN_THREADS=$threads "$bin/icn-classify" train --data "$tmp/train.icn" --steps "$steps" --out "$tmp/m" --quiet
t1=$(date +%s.%N)
icn=$(awk -v s="$steps" -v a="$t0" -v b="$t1" 'BEGIN { print s * 64 / (b - a) }')
torch=$(/usr/bin/python3 tests/bench/torch_mnist.py "$steps" "$threads")
printf 'machine: %s, %s threads\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$threads"
printf 'icn-classify train: %8.1f img/s (%d steps of 64, whole process timed)\n' "$icn" "$steps"
printf 'python3-torch %s:  %8.1f img/s\n' "$(/usr/bin/python3 -c 'import torch;print(torch.__version__)')" "$torch"
printf 'ratio icn/torch:    %8.2f\n' "$(awk -v a="$icn" -v b="$torch" 'BEGIN { print a / b }')"
ICN_THREADS=$threads "$BUILD/tests/bench_sgemm" 64
