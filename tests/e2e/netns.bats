#!/usr/bin/env bats
# The introspective pipeline across "machines": a head namespace (pool, trainer) and two worker
# namespaces (synthesizers), joined by veth pairs and a bridge (tests/e2e/netns.bash), with
# real processes, real MNIST images and a small net. Every namespace is removed afterwards,
# also when a test fails.

load helpers
load netns

setup_file() {
    need_netns
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    need_mnist
    need_netns
    SNAP=tcp://$HEAD_ADDR:$SNAP_PORT PUSH=tcp://$HEAD_ADDR:$PUSH_PORT REQ=tcp://$HEAD_ADDR:$REQ_PORT
    PIDS=()
    [ -s "$BATS_FILE_TMPDIR/train.icn" ] ||
        icn-load mnist --split train --limit 300 --seed 1 --out "$BATS_FILE_TMPDIR/train.icn" --quiet
    netns_up
}

teardown() { # politely (they exit 0 on SIGTERM), then for sure; then the namespaces go
    local p
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
    netns_down
}

teardown_file() { # a test that died between netns_up and its teardown
    netns_sweep_stale
}

# start_pool [STORE [FLAGS...]]
start_pool() {
    local store=${1:-pool.store}; shift || true
    ip netns exec "$NS_HEAD" icn-pool serve --store "$store" --pull "$PUSH" --rep "$REQ" "$@" 2>>pool.log &
    POOL_PID=$!
    PIDS+=($!)
}

# start_synth WORKER(1|2) ID [FLAGS...]
start_synth() {
    local ns=NS_W$1 id=$2; shift 2
    ip netns exec "${!ns}" icn-synthesize --snapshots "$SNAP" --pool "$PUSH" --id "$id" --seed "$id" --batch 2 \
        --max-steps 20 --metrics "synth-$id.jsonl" "$@" 2>>"synth-$id.log" &
    PIDS+=($!)
    LAST_SYNTH=$!
}

trainer_args() {
    TRAINER=(ip netns exec "$NS_HEAD" icn-classify train --introspective --data "$BATS_FILE_TMPDIR/train.icn" --arch c8-c16
        --batch 32 --pn-batch 16 --initial-steps 20 --round-steps 15 --per-class 2 --seed 1 --publish "$SNAP"
        --pool "$REQ" --wait-timeout 120 --quiet "$@")
}

trainer() {
    trainer_args "$@"
    "${TRAINER[@]}"
}

trainer_bg() {
    trainer_args "$@"
    "${TRAINER[@]}" &
    TRAINER_PID=$!
    PIDS+=($!)
}

pool_stats() { # the running pool's stats as JSON, asked from inside the head namespace
    in_ns "$NS_HEAD" icn-pool stats --connect "$REQ" --json
}

@test "netns: a run of three generations with pseudo-negatives from both workers" {
    start_pool
    # each worker gives at most 1 of the 2 pseudo-negatives a class needs per generation
    start_synth 1 1 --max-per-gen 1
    start_synth 2 2 --max-per-gen 1
    trainer --rounds 3 --out icn.model --metrics m.jsonl
    pool_stats >stats.json
    cat stats.json
    json_check stats.json 'd["per_producer"] == {"1": 30, "2": 30}'
    json_check stats.json 'd["per_generation"] == {"1": 20, "2": 20, "3": 20}'
    "$PYTHON" - m.jsonl <<'PY'
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["event"] == "round"]
assert [r["generation"] for r in rounds] == [1, 2, 3], rounds
assert [r["pn_new"] for r in rounds] == [20, 20, 20], rounds
PY
    [ -s icn.model ]
    # the workers' connections really crossed the bridge: the head's veth ends carried traffic
    for i in 1 2; do
        rx=$(in_ns "$NS_HEAD" cat "/sys/class/net/w$i/statistics/rx_bytes")
        [ "$rx" -gt 100000 ] || die "w$i received only $rx bytes"
    done
}


# store_records STORE: the stored pseudo-negatives as .npy files (rec-images.npy, rec-prov.npy),
# and a check that no image is stored twice; prints "PRODUCER COUNT" lines.
store_records() {
    rm -f rec-*.npy
    icn-pool dump --store "$1" --out rec.icn --quiet
    icn-load stream rec.icn --npy-out rec --quiet
    "$PYTHON" - <<'PY'
import collections, numpy as np, sys
img = np.load("rec-images.npy")
prov = np.load("rec-prov.npy")
assert len(img) == len(prov), (len(img), len(prov))
seen = collections.Counter(x.tobytes() for x in img)
dup = sum(c - 1 for c in seen.values() if c > 1)
if dup:
    sys.exit("%d of %d stored images are stored more than once" % (dup, len(img)))
for p, n in sorted(collections.Counter(prov["producer"].tolist()).items()):
    print(p, n)
PY
}

# pushed ID: samples synthesizer ID says it pushed (its --metrics "batch" events).
pushed() {
    "$PYTHON" -c '
import json, sys
print(sum(json.loads(l)["n"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "batch"))' "synth-$1.jsonl"
}

# wait_exit SECONDS PID: wait for a process to end by itself
wait_exit() {
    timeout "$1" tail --pid="$2" -f /dev/null
}

@test "netns: a worker's link down for 10 s and back: its batches arrive, once each" {
    start_pool
    # 100 steps for every sample: a few dozen samples a second, so worker 1 goes on pushing
    # into its queue while its link is down
    start_synth 1 1 --stop 3 --max-steps 100
    s1=$LAST_SYNTH
    start_synth 2 2 --stop 3 --max-steps 100
    s2=$LAST_SYNTH
    trainer_bg --rounds 6 --out icn.model --metrics m.jsonl
    for _ in $(seq 1 300); do grep -qs '"event":"batch"' synth-1.jsonl && break; sleep 0.1; done
    grep -q '"event":"batch"' synth-1.jsonl
    before=$(pushed 1)
    ip -n "$NS_W1" link set eth0 down
    sleep 10
    during=$(pushed 1)
    ip -n "$NS_W1" link set eth0 up
    netns_wait_link 1
    wait "$TRAINER_PID"
    # the workers end on the trainer's "stop"; one that missed it while its link was down is
    # told to end (SIGTERM: it finishes what it has queued) once its link has carried its queue
    wait_exit 5 "$s1" || kill "$s1"
    wait_exit 20 "$s1" || { tail -3 synth-1.log; die "worker 1 did not end"; }
    wait_exit 10 "$s2" || kill "$s2"
    wait_exit 10 "$s2"
    kill "$POOL_PID"
    wait_exit 10 "$POOL_PID"
    store_records pool.store >stored.txt
    p1=$(pushed 1) p2=$(pushed 2)
    echo "# worker 1 pushed $before samples before its link went down, $((during - before)) while it was down," \
        "$p1 in all; worker 2 $p2; stored (producer count): $(tr '\n' ' ' <stored.txt)" >&3
    [ "$during" -gt "$before" ] || die "worker 1 pushed nothing while its link was down"
    grep -qx "1 $p1" stored.txt || die "worker 1 pushed $p1, stored: $(cat stored.txt)"
    grep -qx "2 $p2" stored.txt || die "worker 2 pushed $p2, stored: $(cat stored.txt)"
}
