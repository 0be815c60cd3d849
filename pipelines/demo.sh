#!/bin/bash
# make demo: a few minutes on 2 cores. Introspective training of the paper's MNIST net on 500
# real MNIST images with 2 synthesizer processes, a pool and the trainer over ZeroMQ, then the
# baseline with the same real-data schedule; prints both test errors on the 10,000 test images.
# The full protocol of the paper's training-size experiment is pipelines/icn-mnist.sh's default.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/icn-mnist.sh" --train-images "${ICN_DEMO_IMAGES:-500}" --synthesizers 2 --seed 1 \
    --dir "${ICN_DEMO_DIR:-runs/demo}" -- --initial-steps 300 --rounds 3 --round-steps 100 --per-class 10 "$@"
