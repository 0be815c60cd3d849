#!/bin/bash
# make bench: icn-classify against Debian's python3-torch, same net, same batch, same cores:
# the paper's MNIST net on MNIST, then resnet32 on random 32x32x3 images (CIFAR's shape).
# Prints images per second for both and their ratio, and the sgemm bound beside the first.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bin
steps=${BENCH_STEPS:-300}
resnet_steps=${BENCH_RESNET_STEPS:-30}
threads=${ICN_THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "bench: the reference needs Debian's python3-torch: apt-get install -y python3-torch" >&2
    exit 1
fi

# compare ARCH DATA BATCH STEPS H W C: train ARCH with icn-classify (whole process timed) and
# with PyTorch (after 5 warm-up steps), the same batch size and number of steps, and print both.
# The OPENBLAS_* variables set on some machines are left as they are, and printed: icn's sgemm
# follows them (OPENBLAS_CORETYPE=Haswell forgoes AVX-512), PyTorch's convolutions (oneDNN) do not.
compare() {
    local arch=$1 data=$2 batch=$3 n=$4 h=$5 w=$6 c=$7 t0 t1 icn torch
    t0=$(date +%s.%N)
    ICN_THREADS=$threads "$bin/icn-classify" train --data "$data" --arch "$arch" --batch "$batch" --steps "$n" \
        --out "$tmp/m" --quiet
    t1=$(date +%s.%N)
    icn=$(awk -v s="$n" -v b="$batch" -v a="$t0" -v e="$t1" 'BEGIN { print s * b / (e - a) }')
    torch=$(/usr/bin/python3 tests/bench/torch_bench.py "$arch" "$n" "$threads" "$batch" "$h" "$w" "$c")
    printf 'icn-classify train: %8.1f img/s (%d steps of %d, whole process timed)\n' "$icn" "$n" "$batch"
    printf 'python3-torch %s:  %8.1f img/s\n' "$(/usr/bin/python3 -c 'import torch;print(torch.__version__)')" "$torch"
    printf 'ratio icn/torch:    %8.2f\n' "$(awk -v a="$icn" -v b="$torch" 'BEGIN { print a / b }')"
}

printf 'machine: %s, %s threads%s\n' "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$threads" \
    "$(env | grep '^OPENBLAS_' | sort | sed 's/^/, /' | tr -d '\n')"
echo "== mnist: the paper's MNIST net, batch 64, 2,000 MNIST training images"
"$bin/icn-load" mnist --split train --limit 2000 --seed 1 --out "$tmp/train.icn" --quiet
compare mnist "$tmp/train.icn" 64 "$steps" 28 28 1
ICN_THREADS=$threads "$BUILD/tests/bench_sgemm" 64
echo "== resnet32: pre-activation ResNet-32, batch 128, 2,000 random 32x32x3 images"
"$BUILD/tests/bench_data" 2000 32 32 3 10 1 >"$tmp/cifar-shaped.icn"
compare resnet32 "$tmp/cifar-shaped.icn" 128 "$resnet_steps" 32 32 3
