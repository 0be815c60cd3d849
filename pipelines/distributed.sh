#!/bin/bash
# Synthesizers on many machines against one trainer and one pool.
#
#   On the head node (trainer + pool, listening on all interfaces):
#     pipelines/distributed.sh head [--train-images N] [--seed S] [--dir DIR] [-- TRAINER FLAGS]
#   On each worker machine (as many synthesizers as it has cores, one thread each):
#     pipelines/distributed.sh worker HEAD_HOST [--synthesizers N] [--id-base B] [-- SYNTH FLAGS]
#   (producer ids B+1..B+N; B defaults to a number derived from the host name)
#   or from the head node over ssh, for a list of workers:
#     for h in w1 w2 w3; do ssh -f $h 'cd icn && pipelines/distributed.sh worker head'; done
#
# Ports (ICN_PORT_BASE, default 5560): +0 snapshots (PUB), +1 pool intake (PULL),
# +2 pool requests (REP). Workers exit when the trainer publishes "stop"; a worker that
# dies or joins late does not disturb the run. The links carry no authentication: use them
# on a trusted network (or a VPN / ssh tunnel).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${ICN_BIN:-$here/../build/bin}
[ -x "$bin/icn-classify" ] || bin=$(dirname "$(command -v icn-classify)")
port=${ICN_PORT_BASE:-5560}
role=${1:-}; shift || true
case $role in
head)
    images=2000 seed=1 dir=runs/distributed
    while [ $# -gt 0 ]; do
        case $1 in
        --train-images) images=$2; shift 2 ;; --seed) seed=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
        --) shift; break ;; *) echo "distributed: unknown flag '$1'" >&2; exit 2 ;;
        esac
    done
    mkdir -p "$dir"
    "$bin/icn-load" mnist --split train --limit "$images" --seed "$seed" --out "$dir/train.icn" --quiet
    "$bin/icn-pool" serve --store "$dir/pool.store" --shape 28x28x1 --classes 10 --pull "tcp://*:$((port + 1))" --rep "tcp://*:$((port + 2))" \
        2>>"$dir/pool.log" &
    pool=$!
    trap 'kill $pool 2>/dev/null || true' EXIT
    "$bin/icn-classify" train --introspective --data "$dir/train.icn" --seed "$seed" \
        --publish "tcp://*:$port" --pool "tcp://127.0.0.1:$((port + 2))" \
        --checkpoint "$dir/icn.ckpt" --resume --out "$dir/icn.model" --metrics "$dir/icn.jsonl" "$@"
    ;;
worker)
    head_host=${1:?usage: distributed.sh worker HEAD_HOST [--synthesizers N] [--id-base B] [-- SYNTHESIZER FLAGS]}
    shift
    n=$(nproc) id_base=$(( $(hostname | cksum | cut -d' ' -f1) % 100000 * 100 ))
    while [ $# -gt 0 ]; do
        case $1 in
        --synthesizers) n=$2; shift 2 ;; --id-base) id_base=$2; shift 2 ;;
        --) shift; break ;; *) echo "distributed: unknown flag '$1'" >&2; exit 2 ;;
        esac
    done
    pids=()
    for i in $(seq 1 "$n"); do
        "$bin/icn-synthesize" --snapshots "tcp://$head_host:$port" --pool "tcp://$head_host:$((port + 1))" \
            --threads 1 --id "$((id_base + i))" "$@" &
        pids+=($!)
    done
    trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
    wait
    ;;
*)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    [ "$role" = -h ] || [ "$role" = --help ] || exit 2
    ;;
esac
