#!/bin/bash
# Synthesizers on many machines against one trainer and one pool, over CURVE-encrypted,
# authenticated links (icn-wire(5) SECURITY).
#
#   On the head node (trainer + pool, listening on all interfaces):
#     pipelines/distributed.sh head [--train-images N] [--seed S] [--dir DIR] [--keys KDIR]
#                                   [--insecure] [-- TRAINER FLAGS]
#   On each worker machine (as many synthesizers as it has cores, one thread each):
#     pipelines/distributed.sh worker HEAD_HOST [--synthesizers N] [--id-base B] [--keys KDIR]
#                                   [--insecure] [-- SYNTH FLAGS]
#   (producer ids B+1..B+N; B defaults to a number derived from the host name)
#   or from the head node over ssh, for a list of workers:
#     for h in w1 w2 w3; do ssh -f $h 'cd icn && pipelines/distributed.sh worker head'; done
#
# Keys (KDIR: --keys, else $ICN_KEYS, else DIR/keys on the head and runs/distributed/keys on a
# worker): the head makes KDIR/head.key and KDIR/head.pub and admits the public keys in
# KDIR/allow/; a worker makes KDIR/workers/HOST.key (once per host) and puts its public half
# in KDIR/allow/. With KDIR on a shared filesystem (NFS, a cluster's home) nothing else is
# needed; otherwise copy head.pub to each worker's KDIR and each worker's allow/HOST.pub to the
# head's KDIR/allow/ (the head picks up new keys while it runs). A worker waits up to a minute
# for head.pub. --insecure: no keys, plain TCP (a trusted network only).
#
# Ports (ICN_PORT_BASE, default 5560): +0 snapshots (PUB), +1 pool intake (ROUTER),
# +2 pool requests (REP). Workers exit when the trainer publishes "stop"; a worker that
# dies or joins late does not disturb the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${ICN_BIN:-$here/../build/bin}
[ -x "$bin/icn-classify" ] || bin=$(dirname "$(command -v icn-classify)")
port=${ICN_PORT_BASE:-5560}
role=${1:-}; shift || true
keys=${ICN_KEYS:-} insecure=0
case $role in
head)
    images=2000 seed=1 dir=runs/distributed
    while [ $# -gt 0 ]; do
        case $1 in
        --train-images) images=$2; shift 2 ;; --seed) seed=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
        --keys) keys=$2; shift 2 ;; --insecure) insecure=1; shift ;;
        --) shift; break ;; *) echo "distributed: unknown flag '$1'" >&2; exit 2 ;;
        esac
    done
    mkdir -p "$dir"
    if [ "$insecure" = 1 ]; then
        sec=(--insecure)
    else
        keys=${keys:-$dir/keys}
        mkdir -p "$keys/allow"
        [ -f "$keys/head.key" ] || "$bin/icn-pool" keygen "$keys/head" >/dev/null
        sec=(--secret-key "$keys/head.key" --allow "$keys/allow")
        echo "distributed: head key $keys/head.pub; workers' public keys go in $keys/allow/" >&2
    fi
    "$bin/icn-load" mnist --split train --limit "$images" --seed "$seed" --out "$dir/train.icn" --quiet
    "$bin/icn-pool" serve --store "$dir/pool.store" --shape 28x28x1 --classes 10 --intake "tcp://*:$((port + 1))" \
        --rep "tcp://*:$((port + 2))" "${sec[@]}" 2>>"$dir/pool.log" &
    pool=$!
    trap 'kill $pool 2>/dev/null || true' EXIT
    "$bin/icn-classify" train --introspective --data "$dir/train.icn" --seed "$seed" \
        --publish "tcp://*:$port" --pool "tcp://127.0.0.1:$((port + 2))" "${sec[@]}" \
        --checkpoint "$dir/icn.ckpt" --resume --out "$dir/icn.model" --metrics "$dir/icn.jsonl" "$@"
    ;;
worker)
    head_host=${1:?usage: distributed.sh worker HEAD_HOST [--synthesizers N] [--id-base B] [--keys KDIR] [--insecure] [-- SYNTHESIZER FLAGS]}
    shift
    n=$(nproc) id_base=$(( $(hostname | cksum | cut -d' ' -f1) % 100000 * 100 ))
    while [ $# -gt 0 ]; do
        case $1 in
        --synthesizers) n=$2; shift 2 ;; --id-base) id_base=$2; shift 2 ;;
        --keys) keys=$2; shift 2 ;; --insecure) insecure=1; shift ;;
        --) shift; break ;; *) echo "distributed: unknown flag '$1'" >&2; exit 2 ;;
        esac
    done
    if [ "$insecure" = 1 ]; then
        sec=()
    else
        keys=${keys:-runs/distributed/keys}
        for _ in $(seq 60); do [ -f "$keys/head.pub" ] && break; sleep 1; done
        [ -f "$keys/head.pub" ] || { echo "distributed: no $keys/head.pub (copy the head's, or use --insecure)" >&2; exit 1; }
        me=$(hostname)-$id_base
        mkdir -p "$keys/workers" "$keys/allow"
        if [ ! -f "$keys/workers/$me.key" ]; then
            "$bin/icn-pool" keygen "$keys/workers/$me" >/dev/null
            cp "$keys/workers/$me.pub" "$keys/allow/$me.pub.tmp" && mv "$keys/allow/$me.pub.tmp" "$keys/allow/$me.pub"
        fi
        sec=(--secret-key "$keys/workers/$me.key" --server-key "$keys/head.pub")
    fi
    pids=()
    for i in $(seq 1 "$n"); do
        "$bin/icn-synthesize" --snapshots "tcp://$head_host:$port" --pool "tcp://$head_host:$((port + 1))" \
            --threads 1 --id "$((id_base + i))" "${sec[@]}" "$@" &
        pids+=($!)
    done
    trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
    wait
    ;;
*)
    sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
    [ "$role" = -h ] || [ "$role" = --help ] || exit 2
    ;;
esac
