#!/usr/bin/env bats
# secure.bats: CURVE keys, the ZAP handler and acknowledged delivery (issue 13), over real
# sockets on 127.0.0.1 with real MNIST test images: an unknown key is refused and nothing of
# it is stored; kill -9 of the pool in the middle of a push of 5,000 one-image frames loses
# nothing acknowledged and stores nothing twice; a push whose batches are not all
# acknowledged exits 1 and says how many.

load helpers

setup_file() {
    if have_mnist; then
        icn-load mnist --split test --limit 5000 --seed 3 --chunk 1 --quiet --out "$BATS_FILE_TMPDIR/f5000.icn"
        icn-load mnist --split test --limit 20 --seed 2 --quiet --out "$BATS_FILE_TMPDIR/b20.icn"
        icn-load mnist --split test --limit 300 --seed 4 --chunk 1 --quiet --out "$BATS_FILE_TMPDIR/f300.icn"
    fi
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    local ports
    ports=$(free_ports 2)
    INTAKE=tcp://127.0.0.1:${ports% *}
    REP=tcp://127.0.0.1:${ports#* }
    F5000=$BATS_FILE_TMPDIR/f5000.icn
    B20=$BATS_FILE_TMPDIR/b20.icn
}

teardown() {
    local pid
    if [ -f pids ]; then
        while read -r pid; do
            kill -CONT "$pid" 2>/dev/null || true
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done <pids
    fi
}

# start_pool STORE [ARGS...]: serve in the background, wait until it answers (with the head's
# key when ARGS hold one). POOL_PID is its pid. NOFILE=N: under a descriptor limit of N (hard
# and soft), as a shared machine might set it.
start_pool() {
    ${NOFILE:+prlimit --nofile=$NOFILE:$NOFILE} icn-pool serve --store "$1" --shape 28x28x1 --classes 10 --intake "$INTAKE" --rep "$REP" "${@:2}" >/dev/null 2>>serve.err 3>&- &
    POOL_PID=$!
    echo "$POOL_PID" >>pids
    local i keys=()
    [ -f head.key ] && keys=(--secret-key head.key)
    for i in $(seq 100); do
        icn-pool stats --connect "$REP" --timeout 300 "${keys[@]}" >/dev/null 2>&1 && return 0
        kill -0 "$POOL_PID" 2>/dev/null || { die "icn-pool serve exited: $(cat serve.err)"; return 1; }
        sleep 0.1
    done
    die "icn-pool serve did not answer on $REP: $(cat serve.err)"
}

# The number of distinct images in a stream.
distinct_images() {
    icn-load stream "$1" --npy-out distinct --quiet
    "$PYTHON" -c 'import numpy as np, sys; x = np.load("distinct-images.npy"); print(len(np.unique(x.reshape(len(x), -1), axis=0)))'
}

@test "keys: keygen makes a 0600 secret and a public key, never overwrites; bad key files are one line" {
    run --separate-stderr icn-pool keygen head
    expect_status 0
    [ "${#output}" = 40 ] || die "public key: $output"
    [ "$(stat -c %a head.key)" = 600 ]
    [ "$(stat -c %s head.key)" = 41 ]
    [ "$(cat head.pub)" = "$output" ]
    run --separate-stderr icn-pool keygen head
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"head.pub: already exists (not overwritten)"* ]]
    run --separate-stderr icn-pool keygen
    expect_status 2
    mkdir allow
    chmod 644 head.key
    run --separate-stderr icn-pool serve --store p --intake "$INTAKE" --rep "$REP" --secret-key head.key --allow allow
    expect_status 2
    one_line_error icn-pool
    [[ "$stderr" == *"secret key head.key: readable or writable by others (chmod 600 it)"* ]] || die "$stderr"
    chmod 600 head.key
    echo "not a key" >allow/junk.pub
    run --separate-stderr icn-pool serve --store p --intake "$INTAKE" --rep "$REP" --secret-key head.key --allow allow
    expect_status 2
    one_line_error icn-pool
    [[ "$stderr" == *"allow/junk.pub: not a key file"* ]] || die "$stderr"
    rm allow/junk.pub
    run --separate-stderr icn-synthesize --secret-key head.key --server-key allow
    expect_status 2
    [[ "$stderr" == *"allow: not a regular file"* ]] || die "$stderr"
    run --separate-stderr icn-pool serve --store p --intake "$INTAKE" --rep "$REP" --secret-key head.key
    expect_status 2
    [[ "$stderr" == *"--secret-key needs --allow DIR"* ]]
}

@test "keys: without keys only loopback may be bound, unless --insecure" {
    local port=${INTAKE##*:}
    run --separate-stderr icn-pool serve --store p --shape 28x28x1 --classes 10 --intake "tcp://*:$port" --rep "$REP"
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"refusing to bind tcp://*:$port in the clear"* ]] || die "$stderr"
    icn-pool serve --store p --shape 28x28x1 --classes 10 --intake "tcp://*:$port" --rep "$REP" --insecure 2>serve.err &
    echo $! >>pids
    local i
    for i in $(seq 50); do icn-pool stats --connect "$REP" --timeout 300 >/dev/null 2>&1 && break; sleep 0.1; done
    icn-pool stats --connect "$REP" --timeout 2000 >/dev/null
}

@test "CURVE: an unknown key is refused, logged with its public key, and nothing of it is stored" {
    need_mnist
    icn-pool keygen head >/dev/null
    mkdir allow
    icn-pool keygen allow/worker >/dev/null # its public half in the allowed dir
    icn-pool keygen rogue >/dev/null
    start_pool pool.icnpool --secret-key head.key --allow allow
    # the rogue: a valid key, the right server key, not allowed
    run --separate-stderr timeout 20 icn-pool push --connect "$INTAKE" --file "$B20" --as-negatives 1 \
        --secret-key rogue.key --server-key head.pub --timeout 1500
    expect_status 1
    [[ "$stderr" == *"were not acknowledged (0 acknowledged"* ]] || die "$stderr"
    # no key at all, and stats / fetch without a key: no answer
    run --separate-stderr timeout 20 icn-pool push --connect "$INTAKE" --file "$B20" --as-negatives 1 --timeout 1000
    expect_status 1
    run --separate-stderr timeout 20 icn-pool stats --connect "$REP" --timeout 1000
    expect_status 1
    run --separate-stderr timeout 20 icn-pool stats --connect "$REP" --timeout 1000 --secret-key rogue.key --server-key head.pub
    expect_status 1
    # the allowed worker gets through, under its key
    icn-pool push --connect "$INTAKE" --file "$B20" --as-negatives 2 --secret-key allow/worker.key --server-key head.pub --quiet
    icn-pool stats --connect "$REP" --secret-key head.key >stats.txt
    grep -qx "total: 20" stats.txt
    grep -qx "class 2: 20" stats.txt
    grep -qF "refused CURVE key $(cat rogue.pub) from 127.0.0.1: not in allow" serve.err || die "$(cat serve.err)"
    # one line per key per 10 s, although the rogue knocked many times
    [ "$(grep -cF "refused CURVE key $(cat rogue.pub)" serve.err)" -le 2 ] || die "$(cat serve.err)"
    kill -TERM "$POOL_PID"
    wait "$POOL_PID"
    icn-pool stats --store pool.icnpool | grep -qx "total: 20"
}

@test "delivery: kill -9 of the pool during a push of 5,000 one-image frames, then a restart: acknowledged == stored, none twice" {
    need_mnist
    [ "$(distinct_images "$F5000")" = 5000 ]
    start_pool pool.icnpool
    icn-pool push --connect "$INTAKE" --file "$F5000" --as-negatives 7 --timeout 30000 2>push.err &
    local push=$! i n=0
    echo "$push" >>pids
    for i in $(seq 300); do # until about a fifth is in
        n=$(icn-pool stats --store pool.icnpool 2>/dev/null | sed -n 's/^total: //p')
        [ "${n:-0}" -ge 1000 ] && break
        sleep 0.1
    done
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    sleep 1
    start_pool pool.icnpool
    wait "$push" || die "push failed: $(cat push.err)"
    grep -q "pushed 5000 frames (5000 pseudo-negatives of class 7) to $INTAKE: all acknowledged" push.err
    kill -TERM "$POOL_PID"
    wait "$POOL_PID"
    icn-pool stats --store pool.icnpool >stats.txt
    grep -qx "total: 5000" stats.txt || die "$(cat stats.txt)"
    icn-pool dump --store pool.icnpool --out dump.icn --quiet
    [ "$(distinct_images dump.icn)" = 5000 ]
}

@test "delivery: push exits 1 and says how many were not acknowledged when the pool dies; every acknowledged one is stored" {
    need_mnist
    start_pool pool.icnpool
    icn-pool push --connect "$INTAKE" --file "$F5000" --as-negatives 7 --timeout 1500 2>push.err &
    local push=$! i n=0 rc=0
    echo "$push" >>pids
    for i in $(seq 300); do
        n=$(icn-pool stats --store pool.icnpool 2>/dev/null | sed -n 's/^total: //p')
        [ "${n:-0}" -ge 500 ] && break
        sleep 0.1
    done
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    wait "$push" || rc=$?
    [ "$rc" = 1 ] || die "push exited $rc: $(cat push.err)"
    [ "$(wc -l <push.err)" = 1 ] || die "$(cat push.err)"
    local acked
    acked=$(sed -n 's/.*were not acknowledged (\([0-9]*\) acknowledged: .*/\1/p' push.err)
    [ -n "$acked" ] || die "$(cat push.err)"
    [[ "$(cat push.err)" == *" of "*" batches sent to $INTAKE were not acknowledged"* ]]
    local stored
    stored=$(icn-pool stats --store pool.icnpool | sed -n 's/^total: //p')
    [ "$stored" -ge "$acked" ] || die "stored $stored < acknowledged $acked"
    [ "$acked" -lt 5000 ]
}

@test "flood: 900 stalled connections for 20 s to a pool with 256 descriptors; an allowed worker's pushes are acknowledged in time" {
    need_mnist
    icn-pool keygen head >/dev/null
    mkdir allow
    icn-pool keygen allow/worker >/dev/null
    NOFILE=256 start_pool pool.icnpool --secret-key head.key --allow allow
    # before the flood: 300 one-image batches
    local t0 t1 cpu0 cpu1 port=${INTAKE##*:}
    t0=$(date +%s.%N)
    icn-pool push --connect "$INTAKE" --file "$BATS_FILE_TMPDIR/f300.icn" --as-negatives 1 \
        --secret-key allow/worker.key --server-key head.pub --quiet
    t1=$(date +%s.%N)
    local calm
    calm=$(echo "$t1 - $t0" | bc)
    "$PYTHON" "$BATS_TEST_DIRNAME/flood.py" 127.0.0.1 "$port" 900 20 >flood.out &
    local flood=$!
    echo "$flood" >>pids
    sleep 3 # the flood is on
    cpu0=$(awk '{print $14 + $15}' /proc/$POOL_PID/stat)
    # during the flood: the same 300 again, as another producer (stored again: 600 in all)
    t0=$(date +%s.%N)
    run --separate-stderr timeout 60 icn-pool push --connect "$INTAKE" --file "$BATS_FILE_TMPDIR/f300.icn" \
        --as-negatives 2 --secret-key allow/worker.key --server-key head.pub --quiet --timeout 30000
    t1=$(date +%s.%N)
    local stormy
    stormy=$(echo "$t1 - $t0" | bc)
    echo "push of 300 batches: ${calm} s calm, ${stormy} s under the flood (exit $status)" >&3
    expect_status 0
    sleep 2
    cpu1=$(awk '{print $14 + $15}' /proc/$POOL_PID/stat)
    wait "$flood"
    echo "flood: $(cat flood.out); pool CPU during 2+ s of it: $((cpu1 - cpu0)) ticks of $(getconf CLK_TCK)/s" >&3
    kill -0 "$POOL_PID" # still up
    # acknowledged in time: within 12 s while the flood lasts 20 s (about 2 s calm on loopback;
    # ZeroMQ's default 30 s handshake let the flood hold every descriptor for all of its 20 s)
    [ "$(echo "$stormy < 12" | bc)" = 1 ] || die "the push took $stormy s under the flood"
    # the pool's CPU while out of descriptors is bounded in the next test
    icn-pool stats --connect "$REP" --secret-key head.key >stats.txt
    grep -qx "total: 600" stats.txt || die "$(cat stats.txt)"
    grep -q "descriptors" serve.err || die "no word on descriptors: $(cat serve.err)"
}

@test "flood: out of descriptors (64), the pool does not spin on failed accepts, and an allowed worker's batch is acknowledged" {
    need_mnist
    icn-pool keygen head >/dev/null
    mkdir allow
    icn-pool keygen allow/worker >/dev/null
    NOFILE=64 start_pool pool.icnpool --secret-key head.key --allow allow
    local cpu0 cpu1 t0 t1 port=${INTAKE##*:}
    "$PYTHON" "$BATS_TEST_DIRNAME/flood.py" 127.0.0.1 "$port" 300 12 >flood.out &
    local flood=$!
    echo "$flood" >>pids
    sleep 2 # every descriptor is taken
    cpu0=$(awk '{print $14 + $15}' /proc/$POOL_PID/stat)
    t0=$(date +%s.%N)
    sleep 5
    cpu1=$(awk '{print $14 + $15}' /proc/$POOL_PID/stat)
    t1=$(date +%s.%N)
    local share
    share=$(echo "scale=3; ($cpu1 - $cpu0) / $(getconf CLK_TCK) / ($t1 - $t0)" | bc)
    echo "pool CPU over $(echo "$t1 - $t0" | bc) s of the flood: $((cpu1 - cpu0)) ticks of $(getconf CLK_TCK)/s, $share of a core" >&3
    # an allowed worker, during the rest of the flood and after it
    run --separate-stderr timeout 60 icn-pool push --connect "$INTAKE" --file "$B20" --as-negatives 1 \
        --secret-key allow/worker.key --server-key head.pub --quiet --timeout 30000
    echo "push: exit $status; flood: $(wait "$flood"; cat flood.out)" >&3
    expect_status 0
    kill -0 "$POOL_PID" # still up
    # ZeroMQ retries a failed accept at once, as long as a connection waits: 0.37 and 0.57 of a
    # core (2 cores shared with other work, load 6) before a failed accept waited 2 ms, 0.011 to
    # 0.021 after; the bound is wide of both
    [ "$(echo "$share < 0.2" | bc)" = 1 ] || die "the pool spent $share of a core while out of descriptors"
    icn-pool stats --connect "$REP" --secret-key head.key >stats.txt
    grep -qx "total: 20" stats.txt || die "$(cat stats.txt)"
    local failed
    failed=$(sed -n 's/^failed accepts: //p' stats.txt)
    [ "$failed" -gt 0 ] || die "no failed accepts counted: $(cat stats.txt)"
    # one line per episode at most every 10 s: the flood lasted 12 s
    local lines
    lines=$(grep -c "out of file descriptors" serve.err)
    [ "$lines" -ge 1 ] && [ "$lines" -le 2 ] || die "$lines lines about failed accepts: $(cat serve.err)"
}
