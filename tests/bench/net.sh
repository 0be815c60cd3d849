#!/bin/bash
# net.sh: the measurements of issue 13 on this machine, over 127.0.0.1 only.
#
#   tests/bench/net.sh hwm [SNAPSHOTS]        publisher peak RSS with one subscriber stopped
#                                             (SIGSTOP) over SNAPSHOTS (30) snapshots of the
#                                             17 MB "mnist" model, published every 0.2 s
#   tests/bench/net.sh kill9 [RUNS]           kill -9 of the pool during a push of 5,000
#                                             one-image frames, restart: acked vs stored, distinct
#   tests/bench/net.sh throughput [SECONDS] [REPS]
#                                             samples/s of 1 and 2 synthesizers, CURVE on and
#                                             off, back to back, REPS times each (medians)
#   tests/bench/net.sh bigframe               pool peak RSS after a 50 MB frame of 50 million
#                                             small integers
#   tests/bench/net.sh diskfull               the pool on a 2 MB tmpfs: one line, acked <= stored
#   tests/bench/net.sh attacks                issue 13's hostile peers against a keyed head:
#                                             poison pixels, no key, an unknown key, a rogue
#                                             publisher, a keyless subscriber and fetcher
#
# Programs from $ICN_BIN (default build/bin); MNIST from the data directory. Prints one line
# per measurement. Never sends traffic anywhere but 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${ICN_BIN:-$here/build/bin}
PATH=$bin:$PATH
work=$(mktemp -d /tmp/icn-net-bench.XXXXXX)
pids=()
cleanup() {
    local p
    # || true on both: under set -e a failing command in the EXIT trap (kill of a process that
    # has already exited) would make the script's exit status 1 after a successful run
    for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
    mountpoint -q "$work/disk" 2>/dev/null && umount "$work/disk"
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
keys() {
    [ -f head.key ] && return
    icn-pool keygen head >/dev/null
    mkdir -p allow
    icn-pool keygen allow/w >/dev/null
}
wait_pool() { # wait_pool REP [KEYFLAGS...]
    local i
    for i in $(seq 100); do icn-pool stats --connect "$1" --timeout 300 "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "no pool at $1" >&2
    return 1
}

case ${1:-} in
hwm)
    n=${2:-30}
    icn-load mnist --split train --limit 300 --seed 1 --quiet --out train.icn
    icn-classify train --data train.icn --arch mnist --steps 1 --out m.model --quiet --threads 1
    snap=tcp://127.0.0.1:$(port)
    icn-classify publish --model m.model --publish "$snap" --every 0.2 --count "$n" --bump --quiet --threads 1 &
    pub=$!
    pids+=($pub)
    icn-synthesize --snapshots "$snap" --pool "tcp://127.0.0.1:$(port)" --quiet --threads 1 2>/dev/null &
    sub=$!
    pids+=($sub)
    sleep 0.3
    kill -STOP "$sub"
    start=$(hwm "$pub") peak=0
    while kill -0 "$pub" 2>/dev/null; do
        h=$(hwm "$pub")
        [ "${h:-0}" -gt "$peak" ] && peak=$h
        sleep 0.1
    done
    echo "hwm: publisher VmHWM $((start / 1024)) MB at the start, $((peak / 1024)) MB after $n snapshots of $(stat -c %s m.model) bytes with the only subscriber stopped (SIGSTOP)"
    ;;
kill9)
    runs=${2:-3}
    icn-load mnist --split test --limit 5000 --seed 3 --chunk 1 --quiet --out f5000.icn
    for r in $(seq "$runs"); do
        rm -f pool.icnpool
        intake=tcp://127.0.0.1:$(port) rep=tcp://127.0.0.1:$(port)
        icn-pool serve --store pool.icnpool --shape 28x28x1 --classes 10 --intake "$intake" --rep "$rep" --quiet 2>serve.err &
        pool=$!
        pids+=($pool)
        wait_pool "$rep"
        icn-pool push --connect "$intake" --file f5000.icn --as-negatives 7 --timeout 30000 2>push.err &
        push=$!
        kill_at=$((500 + RANDOM % 3000)) n=0
        while [ "${n:-0}" -lt "$kill_at" ] && kill -0 "$push" 2>/dev/null; do
            n=$(icn-pool stats --store pool.icnpool 2>/dev/null | sed -n 's/^total: //p')
            sleep 0.05
        done
        kill -9 "$pool"
        wait "$pool" 2>/dev/null || true
        sleep 1
        icn-pool serve --store pool.icnpool --intake "$intake" --rep "$rep" --quiet 2>>serve.err &
        pool=$!
        pids+=($pool)
        rc=0
        wait "$push" || rc=$?
        acked=$(sed -n 's/.*(\([0-9]*\) pseudo-negatives of class 7).*all acknowledged.*/\1/p; s/.*(\([0-9]*\) acknowledged: .*/\1/p' push.err)
        kill -TERM "$pool"
        wait "$pool" || true
        stored=$(icn-pool stats --store pool.icnpool | sed -n 's/^total: //p')
        icn-pool dump --store pool.icnpool --quiet | icn-load stream - --npy-out d --quiet
        distinct=$(/usr/bin/python3 -c 'import numpy as np; x = np.load("d-images.npy"); print(len(np.unique(x.reshape(len(x), -1), axis=0)))')
        echo "kill9: run $r: killed at $n stored; push exit $rc, acknowledged $acked, stored $stored, distinct $distinct"
    done
    ;;
throughput)
    secs=${2:-30} reps=${3:-3}
    icn-load mnist --split train --limit 300 --seed 1 --quiet --out train.icn
    icn-classify train --data train.icn --arch mnist --steps 50 --out m.model --quiet --threads 1
    keys
    cpu() { local p t=0; for p in "$@"; do t=$(echo "$t + $(awk '{print ($14 + $15) / 100}' "/proc/$p/stat")" | bc -l); done; echo "$t"; }
    for rep in $(seq "$reps"); do
        order="off on"
        [ $((rep % 2)) = 0 ] && order="on off" # which goes first alternates
        for n in 1 2; do
            for mode in $order; do
                rm -f pool.icnpool
                snap=tcp://127.0.0.1:$(port) intake=tcp://127.0.0.1:$(port) rep_ep=tcp://127.0.0.1:$(port)
                head=() worker=() client=()
                [ "$mode" = on ] && head=(--secret-key head.key --allow allow) worker=(--secret-key allow/w.key --server-key head.pub) client=(--secret-key head.key)
                icn-pool serve --store pool.icnpool --shape 28x28x1 --classes 10 --intake "$intake" --rep "$rep_ep" --quiet "${head[@]}" 2>/dev/null &
                pool=$!
                # once, then the last-value cache for each subscriber (icn-wire(5))
                icn-classify publish --model m.model --publish "$snap" --quiet --threads 1 "${head[@]}" &
                pub=$!
                pids+=($pool $pub)
                wait_pool "$rep_ep" "${client[@]}"
                syn=()
                for i in $(seq "$n"); do
                    icn-synthesize --snapshots "$snap" --pool "$intake" --id "$i" --seed "$i" --threads 1 --quiet "${worker[@]}" &
                    syn+=($!)
                    pids+=($!)
                done
                sleep 5 # the first snapshot, the first batches
                a=$(icn-pool stats --connect "$rep_ep" "${client[@]}" | sed -n 's/^total: //p')
                t0=$(date +%s.%N) c0=$(cpu "${syn[@]}")
                sleep "$secs"
                b=$(icn-pool stats --connect "$rep_ep" "${client[@]}" | sed -n 's/^total: //p')
                t1=$(date +%s.%N) c1=$(cpu "${syn[@]}")
                kill "${syn[@]}" "$pub" "$pool" 2>/dev/null || true
                wait "${syn[@]}" "$pub" "$pool" 2>/dev/null || true
                echo "throughput: rep $rep synthesizers $n curve $mode samples/s $(echo "($b - $a) / ($t1 - $t0)" | bc -l | xargs printf %.2f)" \
                    "samples per synthesizer CPU-second $(echo "($b - $a) / ($c1 - $c0)" | bc -l | xargs printf %.3f)" \
                    "(synthesizer CPU $(echo "$c1 - $c0" | bc -l | xargs printf %.1f) s of $(echo "$n * ($t1 - $t0)" | bc -l | xargs printf %.0f))"
            done
        done
    done
    ;;
bigframe)
    intake=tcp://127.0.0.1:$(port) rep=tcp://127.0.0.1:$(port)
    icn-pool serve --store pool.icnpool --shape 28x28x1 --classes 10 --intake "$intake" --rep "$rep" --quiet 2>serve.err &
    pool=$!
    pids+=($pool)
    wait_pool "$rep"
    before=$(hwm "$pool")
    # {"kind":"batch","x":[50 million 1s]}: 50 MB that msgpack-c would turn into 1.2 GB
    /usr/bin/python3 -c '
import sys
n = 50_000_000
sys.stdout.buffer.write(bytes([0x82, 0xa4]) + b"kind" + bytes([0xa5]) + b"batch" + bytes([0xa1]) + b"x" + bytes([0xdd]) + n.to_bytes(4, "big") + b"\x01" * n)' >big.bin
    rc=0
    ICN_MAX_FRAME=$((64 << 20)) icn-pool push --raw --connect "$intake" --file big.bin --timeout 3000 2>push.err || rc=$?
    sleep 1
    after=$(hwm "$pool")
    alive=no
    kill -0 "$pool" 2>/dev/null && alive=yes
    echo "bigframe: $(stat -c %s big.bin)-byte frame: push exit $rc ($(cat push.err)); pool VmHWM $((before / 1024)) MB before, $((after / 1024)) MB after; pool alive: $alive"
    ;;
diskfull)
    mkdir disk
    mount -t tmpfs -o size=2m tmpfs disk
    icn-load mnist --split test --limit 5000 --seed 3 --chunk 1 --quiet --out f5000.icn
    intake=tcp://127.0.0.1:$(port) rep=tcp://127.0.0.1:$(port)
    icn-pool serve --store disk/pool.icnpool --shape 28x28x1 --classes 10 --intake "$intake" --rep "$rep" --quiet 2>serve.err &
    pool=$!
    pids+=($pool)
    wait_pool "$rep"
    rc=0
    icn-pool push --connect "$intake" --file f5000.icn --as-negatives 7 --timeout 3000 2>push.err || rc=$?
    prc=0
    wait "$pool" || prc=$?
    stored=$(icn-pool stats --store disk/pool.icnpool 2>/dev/null | sed -n 's/^total: //p')
    echo "diskfull: pool exit $prc: $(tail -1 serve.err)"
    echo "diskfull: push exit $rc: $(cat push.err)"
    echo "diskfull: stored $stored"
    ;;
attacks)
    keys
    icn-pool keygen rogue >/dev/null
    icn-load mnist --split test --limit 20 --seed 2 --quiet --out b20.icn
    # a batch frame of 10 images whose pixels are all 3e38, labels -2, provenance, origin (1, 1)
    /usr/bin/python3 -c '
import struct, sys
def s(t): b = t.encode(); return bytes([0xa0 | len(b)]) + b
def bn(b): return bytes([0xc6]) + struct.pack(">I", len(b)) + b
n = 10
prov = bytes([0x85]) + s("generation") + bn(struct.pack("<10i", *[1] * n)) + s("steps") + bn(struct.pack("<10i", *[0] * n)) \
    + s("logit") + bn(struct.pack("<10f", *[0.0] * n)) + s("reached") + bn(bytes(n)) + s("producer") + bn(struct.pack("<10I", *[9] * n))
m = bytes([0x87]) + s("kind") + s("batch") + s("shape") + bytes([0x94, n, 28, 28, 1]) \
    + s("x") + bn(struct.pack("<f", 3e38) * (n * 784)) + s("y") + bn(struct.pack("<10i", *[-2] * n)) \
    + s("prov") + prov + s("producer") + bytes([1]) + s("seq") + bytes([1])
sys.stdout.buffer.write(m)' >poison.bin
    intake=tcp://127.0.0.1:$(port) rep=tcp://127.0.0.1:$(port) snap=tcp://127.0.0.1:$(port) rsnap=tcp://127.0.0.1:$(port)
    icn-pool serve --store pool.icnpool --shape 28x28x1 --classes 10 --intake "$intake" --rep "$rep" --secret-key head.key --allow allow 2>serve.err &
    pids+=($!)
    wait_pool "$rep" --secret-key head.key
    W=(--secret-key allow/w.key --server-key head.pub) R=(--secret-key rogue.key --server-key head.pub)
    r() { local rc=0; "$@" >out.txt 2>err.txt || rc=$?; echo "exit $rc: $(tail -1 err.txt)"; }
    echo "attacks: poison (3e38 pixels) from an allowed worker: $(r icn-pool push --raw --connect "$intake" --file poison.bin "${W[@]}" --timeout 3000)"
    echo "attacks: poison from a peer without a key: $(r icn-pool push --raw --connect "$intake" --file poison.bin --timeout 3000)"
    echo "attacks: batches from an unknown key: $(r icn-pool push --connect "$intake" --file b20.icn --as-negatives 1 "${R[@]}" --timeout 3000)"
    echo "attacks: stats/fetch (the REP socket) without a key: $(r icn-pool stats --connect "$rep" --timeout 3000)"
    echo "attacks: stats/fetch with an unknown key: $(r icn-pool stats --connect "$rep" "${R[@]}" --timeout 3000)"
    echo "attacks: the pool holds $(icn-pool stats --connect "$rep" --secret-key head.key | sed -n 's/^total: //p') records; its log: $(grep -c 'refused CURVE key' serve.err) refused-key lines, $(grep -c 'rejected frame' serve.err) rejected frames: $(grep 'rejected frame' serve.err | head -1)"
    icn-load mnist --split train --limit 300 --seed 1 --quiet --out train.icn
    icn-classify train --data train.icn --arch c8-c16 --steps 1 --out m.model --quiet --threads 1
    icn-classify publish --model m.model --publish "$snap" --every 0.2 --secret-key head.key --allow allow --quiet &
    pids+=($!)
    # the rogue publishes with its own key where a worker is told the head is
    icn-classify publish --model m.model --publish "$rsnap" --every 0.2 --secret-key rogue.key --allow allow --quiet &
    pids+=($!)
    for who in keyless rogue-publisher allowed; do
        case $who in
        keyless) args=(--snapshots "$snap") ;;
        rogue-publisher) args=(--snapshots "$rsnap" "${W[@]}") ;;
        allowed) args=(--snapshots "$snap" "${W[@]}") ;;
        esac
        timeout 5 icn-synthesize "${args[@]}" --pool "$intake" --threads 1 --max-steps 1 --metrics "m-$who.jsonl" --quiet 2>/dev/null || true
        echo "attacks: a $who subscriber received $(cat "m-$who.jsonl" 2>/dev/null | grep -c '"event":"snapshot"' || true) snapshots in 5 s"
    done
    ;;
*)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
