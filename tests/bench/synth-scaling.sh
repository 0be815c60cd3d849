#!/bin/bash
# Synthesis throughput: pseudo-negatives per second reaching the pool with 1, 2, 4, ...
# icn-synthesize processes (one thread each) on this machine, sampling from a model that
# `icn-classify publish` serves as a new snapshot generation every second; and the snapshot
# delivery time, publisher to synthesizer (wall clock, same machine), of the generations
# published during the measuring window (a synthesizer's first snapshot, the publisher's reply
# to its snapshot request, is not a delivery of a new snapshot):
# "delivered" when the synthesizer's snapshot thread has it received and decoded, "in use"
# when synthesis switched to it after the pass in flight.
#
#   tests/bench/synth-scaling.sh MODEL [N ...]      (default N: 1 2 4)
#   SCALE_SECONDS=20 sets the measuring window per point (after 3 s of warm-up).
set -euo pipefail
model=${1:?usage: synth-scaling.sh MODEL [N ...]}; shift
counts=${*:-1 2 4}
bin=${ICN_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
window=${SCALE_SECONDS:-20}
py=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
printf 'machine: %s, %s cores; model %s\n' "$( (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$model"
for n in $counts; do
    snap=tcp://127.0.0.1:$(port) push=tcp://127.0.0.1:$(port) req=tcp://127.0.0.1:$(port)
    d=$tmp/n$n; mkdir -p "$d"
    "$bin/icn-pool" serve --store "$d/pool" --shape 28x28x1 --classes 10 --pull "$push" --rep "$req" --fsync none --quiet 2>"$d/pool.log" &
    pids+=($!)
    "$bin/icn-classify" publish --model "$model" --publish "$snap" --every 1 --bump --metrics "$d/pub.jsonl" --quiet &
    pids+=($!)
    for i in $(seq 1 "$n"); do
        "$bin/icn-synthesize" --snapshots "$snap" --pool "$push" --id "$i" --threads 1 --quiet \
            --metrics "$d/s$i.jsonl" &
        pids+=($!)
    done
    sleep 3
    total() { "$bin/icn-pool" stats --connect "$req" --json | $py -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
    c0=$(total); t0=$(date +%s.%N)
    sleep "$window"
    c1=$(total); t1=$(date +%s.%N)
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    $py - "$d" "$n" "$c0" "$c1" "$t0" "$t1" <<'PY'
import glob, json, os, statistics, sys
d, n, c0, c1, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
pub = {}
size = 0
for l in open(os.path.join(d, "pub.jsonl")):
    e = json.loads(l)
    if e["event"] != "publish":
        continue  # "reply": the newest snapshot, to one synthesizer that asked for it
    pub[e["generation"]] = e["time"]
    size = e["bytes"]
lat, used = [], []
for f in glob.glob(os.path.join(d, "s*.jsonl")):
    for l in open(f):
        e = json.loads(l)
        # generations published in the measuring window (not a reply to a start-up request)
        if e["event"] == "snapshot" and e["generation"] in pub and pub[e["generation"]] >= t0:
            lat.append(1000 * (e["time"] - pub[e["generation"]]))  # received and decoded
            if "taken" in e:  # synthesis switched to it, after the pass in flight
                used.append(1000 * (e["taken"] - pub[e["generation"]]))
rate = (c1 - c0) / (t1 - t0)
lat.sort(), used.sort()
q = lambda a, p: a[min(len(a) - 1, int(p * len(a)))] if a else float("nan")
print("%2d synthesizers: %8.1f pseudo-negatives/s (%6.1f per process); in use after median %.1f ms, p90 %.1f ms "
      "(%d); snapshot of %.1f MB delivered in median %.1f ms, p90 %.1f ms, max %.1f ms (%d deliveries)"
      % (n, rate, rate / n, q(used, 0.5), q(used, 0.9), len(used), size / 1e6, q(lat, 0.5), q(lat, 0.9),
         lat[-1] if lat else float("nan"), len(lat)))
PY
done
