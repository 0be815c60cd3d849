#!/usr/bin/env bats
# Workers do not outlive their run (issue 24, item 3): real processes on loopback, real MNIST.
# Whatever happens to the trainer (SIGKILL, an end its "stop" never reached a worker from),
# every synthesizer ends by itself within the liveness bound (--liveness, here 5 s) with one
# line saying why, and stores nothing made after it lost word of the trainer. And a late
# joiner gets the newest snapshot on request (the Clone pattern), promptly.

load helpers

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

setup() {
    cd "$BATS_TEST_TMPDIR"
    need_mnist
    SNAP=tcp://127.0.0.1:$(free_port) PUSH=tcp://127.0.0.1:$(free_port) REQ=tcp://127.0.0.1:$(free_port)
    PIDS=()
    [ -s "$BATS_FILE_TMPDIR/train.icn" ] ||
        icn-load mnist --split train --limit 300 --seed 1 --out "$BATS_FILE_TMPDIR/train.icn" --quiet
}

teardown() { # politely (they exit 0 on SIGTERM), then for sure
    local p
    for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
}

start_pool() {
    icn-pool serve --store pool.store --shape 28x28x1 --classes 10 --pull "$PUSH" --rep "$REQ" 2>>pool.log &
    PIDS+=($!)
}

LIVENESS=5

start_synth() { # id, extra flags
    local id=$1; shift
    icn-synthesize --snapshots "$SNAP" --pool "$PUSH" --id "$id" --seed "$id" --batch 2 --max-steps 20 \
        --liveness "$LIVENESS" --metrics "synth-$id.jsonl" "$@" 2>>"synth-$id.log" &
    PIDS+=($!)
    LAST_SYNTH=$!
}

trainer_bg() { # flags
    icn-classify train --introspective --data "$BATS_FILE_TMPDIR/train.icn" --batch 32 --pn-batch 16 --seed 1 \
        --clip-grad 10 --publish "$SNAP" --pool "$REQ" --wait-timeout 120 --quiet "$@" &
    TRAINER_PID=$!
    PIDS+=($!)
}

# ends_alone SECONDS PID: the process ends by itself within SECONDS; STATUS is its exit status
ends_alone() {
    local t0=$SECONDS
    timeout "$1" tail --pid="$2" -f /dev/null || die "pid $2 still runs $1 s later"
    ELAPSED=$((SECONDS - t0))
    STATUS=0
    wait "$2" || STATUS=$?
}

# made_after ID T: batches synthesizer ID made after wall-clock time T (its "batch" events)
made_after() {
    "$PYTHON" -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["event"] == "batch" and json.loads(l)["time"] > float(sys.argv[2])))' \
        "synth-$1.jsonl" "$2"
}

# stored_by PRODUCER: records of one producer in the running pool
stored_by() {
    icn-pool stats --connect "$REQ" --json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["per_producer"].get(sys.argv[1], 0))' "$1"
}

pushed() { # ID: samples synthesizer ID made and pushed (its "batch" events)
    "$PYTHON" -c 'import json, sys; print(sum(json.loads(l)["n"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "batch"))' "synth-$1.jsonl"
}

@test "liveness: a trainer or publisher killed with SIGKILL: every synthesizer ends by itself within the bound, saying why" {
    start_pool
    start_synth 1
    s1=$LAST_SYNTH
    start_synth 2
    s2=$LAST_SYNTH
    trainer_bg --arch c8-c16 --initial-steps 20 --round-steps 15 --per-class 3 --rounds 1000 --out icn.model --metrics m.jsonl
    for _ in $(seq 1 300); do [ "$(cat m.jsonl 2>/dev/null | grep -c '"event":"round"')" -ge 2 ] && break; sleep 0.1; done
    [ "$(grep -c '"event":"round"' m.jsonl)" -ge 2 ] || die "the trainer did not get past round 2"
    kill -9 "$TRAINER_PID"
    killed=$(date +%s.%N)
    # the bound: --liveness, then at most 5 s for the last acknowledgements, and a pass
    for s in "$s1" "$s2"; do
        ends_alone $((LIVENESS + 10)) "$s"
        [ "$STATUS" -eq 1 ] || die "a synthesizer exited $STATUS"
    done
    for i in 1 2; do
        tail -1 "synth-$i.log" | grep -q "producer $i: no word from the trainer at $SNAP for [0-9]* s (liveness $LIVENESS s): it is gone; stopping after" ||
            die "synthesizer $i: $(tail -1 "synth-$i.log")"
        # nothing made once it had missed three heartbeats (1 s each) after the kill
        [ "$(made_after "$i" "$(echo "$killed + 3.5" | bc)")" -eq 0 ] || die "synthesizer $i made batches after the trainer was gone"
    done
    echo "# after the trainer's SIGKILL: $(tail -qn1 synth-1.log synth-2.log | tr '\n' ' ')" >&3

    # the same for a plain publisher of a fixed model
    icn-classify train --data "$BATS_FILE_TMPDIR/train.icn" --arch c8-c16 --steps 5 --out small.model --quiet
    icn-classify publish --model small.model --publish "$SNAP" --every 1 --quiet 2>>publish.log &
    publisher=$!
    PIDS+=($publisher)
    start_synth 3
    s3=$LAST_SYNTH
    for _ in $(seq 1 100); do grep -qs '"event":"batch"' synth-3.jsonl && break; sleep 0.1; done
    grep -q '"event":"batch"' synth-3.jsonl
    kill -9 "$publisher"
    ends_alone $((LIVENESS + 10)) "$s3"
    [ "$STATUS" -eq 1 ]
    tail -1 synth-3.log | grep -q "no word from the trainer at $SNAP"
}

@test "liveness: a worker stopped across the trainer's end (its stop lost) ends by itself when resumed, and stores nothing new" {
    # the paper's MNIST net: 17 MB snapshots, more than the socket buffers hold, so what the
    # trainer sends while worker 1 is stopped (its last snapshots, then "stop") cannot all reach it
    start_pool
    start_synth 1 --max-steps 1
    s1=$LAST_SYNTH
    start_synth 2 --max-steps 1
    trainer_bg --arch mnist --batch 8 --pn-batch 8 --initial-steps 1 --round-steps 1 --rounds 30 --async --lr 0.005 \
        --clip-grad 1 --out icn.model --metrics m.jsonl
    for _ in $(seq 1 600); do grep -qs '"event":"batch"' synth-1.jsonl && break; sleep 0.1; done
    grep -q '"event":"batch"' synth-1.jsonl || die "worker 1 made nothing"
    kill -STOP "$s1"
    stopped=$SECONDS
    r0=$(grep -c '"event":"round"' m.jsonl)
    wait "$TRAINER_PID" || die "the trainer failed"
    # resumed once the trainer has been gone for longer than the liveness bound: what waits for
    # worker 1 in its socket buffers (snapshots, heartbeats) is that old
    ended=$SECONDS
    while [ $((SECONDS - ended)) -le $((LIVENESS + 1)) ]; do sleep 0.5; done
    before=$(stored_by 1)
    resumed=$(date +%s.%N)
    kill -CONT "$s1"
    ends_alone 10 "$s1"
    after=$(stored_by 1)
    echo "# worker 1: stopped $((SECONDS - stopped)) s across the trainer's end ($(($(grep -c '"event":"round"' m.jsonl) - r0)) rounds of 17 MB snapshots); ended ${ELAPSED} s after SIGCONT" \
        "(exit $STATUS): $(tail -1 synth-1.log); pool held $before of its samples before, $after after" >&3
    [ "$(made_after 1 "$resumed")" -eq 0 ] || die "worker 1 made batches after it was resumed"
    tail -1 synth-1.log | grep -q "no word from the trainer\|said stop\|finished" || die "$(tail -1 synth-1.log)"
    # all it made (before it was stopped) is stored, once: nothing more
    [ "$after" -eq "$(pushed 1)" ] || die "pool holds $after of worker 1's samples, it made $(pushed 1)"
}

@test "liveness: a late joiner gets the newest snapshot on request within two heartbeats" {
    icn-classify train --data "$BATS_FILE_TMPDIR/train.icn" --arch c8-c16 --steps 5 --out small.model --quiet
    start_pool
    # published once, before anyone subscribed: only a request can bring it
    icn-classify publish --model small.model --publish "$SNAP" --metrics pub.jsonl --quiet 2>>publish.log &
    PIDS+=($!)
    for _ in $(seq 1 50); do grep -qs '"event":"publish"' pub.jsonl && break; sleep 0.1; done
    sleep 1
    t0=$(date +%s.%N)
    start_synth 1
    for _ in $(seq 1 50); do grep -qs '"event":"snapshot"' synth-1.jsonl && break; sleep 0.1; done
    grep -q '"event":"snapshot"' synth-1.jsonl || die "no snapshot within 5 s: $(cat synth-1.log)"
    took=$("$PYTHON" -c 'import json, sys; print(round([json.loads(l)["time"] for l in open(sys.argv[1]) if json.loads(l)["event"] == "snapshot"][0] - float(sys.argv[2]), 2))' synth-1.jsonl "$t0")
    echo "# the late joiner had the snapshot $took s after it started" >&3
    grep -q '"event":"reply"' pub.jsonl
    "$PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 2.5 else 1)' "$took"
}
