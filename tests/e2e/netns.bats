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
    # CURVE on every link: the head's key pair, one per worker, the workers' public keys allowed
    icn-pool keygen head >/dev/null
    mkdir allow
    icn-pool keygen allow/w1 >/dev/null
    icn-pool keygen allow/w2 >/dev/null
    HEAD_KEYS=(--secret-key head.key --allow allow)
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
    ip netns exec "$NS_HEAD" icn-pool serve --store "$store" --shape 28x28x1 --classes 10 --intake "$PUSH" --rep "$REQ" \
        "${HEAD_KEYS[@]}" "$@" 2>>pool.log &
    POOL_PID=$!
    PIDS+=($!)
}

# start_synth WORKER(1|2) ID [FLAGS...]
start_synth() {
    local ns=NS_W$1 id=$2; shift 2
    ip netns exec "${!ns}" icn-synthesize --snapshots "$SNAP" --pool "$PUSH" --id "$id" --seed "$id" --batch 2 \
        --secret-key "allow/w${ns#NS_W}.key" --server-key head.pub \
        --max-steps 20 --metrics "synth-$id.jsonl" "$@" 2>>"synth-$id.log" &
    PIDS+=($!)
    LAST_SYNTH=$!
}

trainer_args() {
    TRAINER=(ip netns exec "$NS_HEAD" icn-classify train --introspective --data "$BATS_FILE_TMPDIR/train.icn" --arch c8-c16
        --batch 32 --pn-batch 16 --initial-steps 20 --round-steps 15 --per-class 2 --seed 1 --publish "$SNAP"
        --pool "$REQ" --wait-timeout 120 --quiet "${HEAD_KEYS[@]}" "$@")
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
    in_ns "$NS_HEAD" icn-pool stats --connect "$REQ" --json --secret-key head.key
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

