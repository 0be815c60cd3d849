#!/usr/bin/env bats
# pool.bats: icn-pool serve / push / stats / dump over real sockets on 127.0.0.1 (ports the
# kernel picks), with real MNIST test images relabelled as pseudo-negatives, garbage frames,
# kill -9 and torn files.

load helpers

setup_file() {
    if have_mnist; then
        icn-load mnist --split test --limit 50 --seed 1 --quiet --out "$BATS_FILE_TMPDIR/a50.icn"
        icn-load mnist --split test --limit 20 --seed 2 --quiet --out "$BATS_FILE_TMPDIR/b20.icn"
    fi
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    local ports
    ports=$(free_ports 2)
    PULL=tcp://127.0.0.1:${ports% *}
    REP=tcp://127.0.0.1:${ports#* }
    A50=$BATS_FILE_TMPDIR/a50.icn
    B20=$BATS_FILE_TMPDIR/b20.icn
}

# Every background process a test started dies with it.
teardown() {
    local pid
    if [ -f pids ]; then
        while read -r pid; do
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done <pids
    fi
}

# start_pool STORE [ARGS...]: serve in the background (stderr appended to serve.err), wait
# until it answers. POOL_PID is its pid.
start_pool() {
    icn-pool serve --store "$1" --shape 28x28x1 --classes 10 --pull "$PULL" --rep "$REP" "${@:2}" >/dev/null 2>>serve.err 3>&- &
    POOL_PID=$!
    echo "$POOL_PID" >>pids
    local i
    for i in $(seq 100); do
        icn-pool stats --connect "$REP" --timeout 300 >/dev/null 2>&1 && return 0
        kill -0 "$POOL_PID" 2>/dev/null || { die "icn-pool serve exited: $(cat serve.err)"; return 1; }
        sleep 0.1
    done
    die "icn-pool serve did not answer on $REP: $(cat serve.err)"
}

# The total the running pool reports.
pool_total() {
    icn-pool stats --connect "$REP" --timeout 2000 | sed -n 's/^total: //p'
}

# wait_total N: until the running pool has stored N records (PUSH is asynchronous).
wait_total() {
    local i t=
    for i in $(seq 100); do
        t=$(pool_total)
        [ "$t" = "$1" ] && return 0
        sleep 0.1
    done
    die "the pool holds '$t' records, expected $1; serve.err: $(cat serve.err)"
}

# `icn-load --info` of a stream: the value of one line ("images", "pixels", ...).
info() {
    icn-load --info "$1" | sed -n "s/^$2: //p"
}

@test "icn-pool: --help everywhere, usage errors exit 2 with one line" {
    for c in serve dump stats push keygen; do
        run icn-pool "$c" --help
        expect_status 0
        [[ "${lines[0]}" == "usage: icn-pool $c"* ]] || die "$c --help: ${lines[0]}"
    done
    run icn-pool --help
    expect_status 0
    run --separate-stderr icn-pool
    expect_status 2
    run --separate-stderr icn-pool frobnicate
    expect_status 2
    one_line_error icn-pool
    run --separate-stderr icn-pool serve --store p --bogus
    expect_status 2
    one_line_error icn-pool
    [[ "$stderr" == *"'--bogus'"* ]]
    run --separate-stderr icn-pool serve
    expect_status 2
    [[ "$stderr" == *"--store FILE is required"* ]]
    run --separate-stderr icn-pool serve --store p --fsync sometimes
    expect_status 2
    [[ "$stderr" == *"--fsync"* ]]
    run --separate-stderr icn-pool stats --store p --connect "$REP"
    expect_status 2
    run --separate-stderr icn-pool push --raw --as-negatives 3
    expect_status 2
    run --separate-stderr icn-pool dump --store p --from -1
    expect_status 2
    [[ "$stderr" == *"--from"* ]]
}

@test "icn-pool: pushed pseudo-negatives are stored; stats and dump give them back" {
    need_mnist
    start_pool pool.icnpool
    icn-pool push --connect "$PULL" --file "$A50" --as-negatives 3 --generation 2 --producer 7 2>push.err
    grep -q "pushed 1 frames (50 pseudo-negatives of class 3)" push.err
    icn-pool push --connect "$PULL" --as-negatives 5 --generation 3 --producer 8 --quiet <"$B20"
    wait_total 70

    icn-pool stats --connect "$REP" >stats.txt
    grep -qx "total: 70" stats.txt
    grep -qx "rejected: 0" stats.txt
    grep -qx "class 3: 50" stats.txt
    grep -qx "class 5: 20" stats.txt
    grep -qx "generation 2: 50" stats.txt
    grep -qx "generation 3: 20" stats.txt
    grep -qx "producer 7: 50" stats.txt
    grep -qx "producer 8: 20" stats.txt
    icn-pool stats --connect "$REP" --json >stats.json
    json_check stats.json 'd["total"] == 70 and d["rejected"] == 0 and d["per_class"] == {"3": 50, "5": 20} and d["per_producer"] == {"7": 50, "8": 20}'

    # SIGTERM: finish, fsync, close, exit 0
    kill -TERM "$POOL_PID"
    local rc=0
    wait "$POOL_PID" || rc=$?
    [ "$rc" -eq 0 ] || die "serve exited $rc after SIGTERM: $(cat serve.err)"
    grep -q "stopped: pool.icnpool holds 70 records" serve.err

    icn-pool stats --store pool.icnpool >file.txt
    grep -qx "total: 70" file.txt
    grep -qx "class 5: 20" file.txt
    [ "$(grep -c rejected file.txt)" -eq 0 ]

    icn-pool dump --store pool.icnpool --out all.icn 2>dump.err
    grep -q "dumped 70 records" dump.err
    [ "$(info all.icn images)" = 70 ]
    [ "$(info all.icn provenance)" = yes ]
    icn-load --info all.icn | grep -qx "pseudo-negative of class 3: 50"
    # the images are MNIST's, unchanged
    icn-pool dump --store pool.icnpool --class 3 --quiet >c3.icn
    [ "$(info c3.icn images)" = 50 ]
    [ "$(info c3.icn pixels)" = "$(info "$A50" pixels)" ]
    icn-pool dump --store pool.icnpool --generation 3 --quiet | icn-load --info - | grep -qx "pseudo-negative of class 5: 20"
    [ "$(icn-pool dump --store pool.icnpool --from 45 --count 10 --quiet | icn-load --info - | sed -n 's/^images: //p')" = 10 ]
    [ "$(icn-pool dump --store pool.icnpool --from 45 --count 10 --class 5 --quiet | icn-load --info - | sed -n 's/^images: //p')" = 5 ]
    [ "$(icn-pool dump --store pool.icnpool --from 70 --quiet | wc -c)" -eq 0 ]
}

@test "icn-pool: garbage frames are rejected with one line each; the pool keeps serving" {
    need_mnist
    start_pool pool.icnpool
    head -c 300 /dev/urandom >random.bin
    # each is refused, to the sender too (push exits 1 and says why)
    run --separate-stderr icn-pool push --raw --connect "$PULL" --file random.bin --quiet
    expect_status 1
    [[ "$stderr" == *"refused by $PULL: "* ]] || die "$stderr"
    run --separate-stderr icn-pool push --raw --connect "$PULL" --quiet < <(printf '\xdd\xff\xff\xff\xff')
    expect_status 1
    [[ "$stderr" == *"4294967295 elements"* ]] || die "$stderr"
    run --separate-stderr icn-pool push --raw --connect "$PULL" --quiet < <(printf '\xc6\xff\xff\xff\xff')
    expect_status 1
    run --separate-stderr icn-pool push --connect "$PULL" --file "$A50" --quiet # real labels: not pseudo-negatives
    expect_status 1
    [[ "$stderr" == *"1 of 1 batches sent to $PULL were not acknowledged (0 acknowledged: 0 images; 1 refused"* ]] ||
        die "$stderr"
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 1 --quiet
    [ "$(pool_total)" = 20 ] # acknowledged means stored: no waiting
    icn-pool stats --connect "$REP" >stats.txt
    grep -qx "rejected: 4" stats.txt
    grep -qx "class 1: 20" stats.txt
    grep -q "^icn-pool: rejected frame 0 from local: " serve.err
    grep -q "^icn-pool: rejected frame 1 from local: array of 4294967295 elements" serve.err
    grep -q "^icn-pool: rejected frame 2 from local: bin length 4294967295 exceeds frame limit" serve.err
    grep -q "^icn-pool: rejected frame 3 from local: refused (label): image 0 has label .*pseudo-negatives" serve.err
    [ "$(grep -c 'rejected frame' serve.err)" -eq 4 ]
    kill -0 "$POOL_PID"
}

@test "icn-pool: a batch sent again is answered as a duplicate, counted, and stored once, across a restart" {
    local frame=$BATS_TEST_DIRNAME/../fuzz/corpus/fuzz_pool_msgs/intake-batch # 2 images 2x2x1, producer 12345, seq 7
    [ -s "$frame" ] || skip "no intake-batch corpus file"
    serve_small() {
        icn-pool serve --store small.icnpool --shape 2x2x1 --classes 3 --intake "$PULL" --rep "$REP" --quiet \
            >/dev/null 2>>serve.err 3>&- &
        POOL_PID=$!
        echo "$POOL_PID" >>pids
        local i
        for i in $(seq 100); do
            icn-pool stats --connect "$REP" --timeout 300 >/dev/null 2>&1 && return 0
            sleep 0.1
        done
        die "icn-pool serve did not answer: $(cat serve.err)"
    }
    serve_small
    run --separate-stderr icn-pool push --raw --connect "$PULL" --file "$frame"
    expect_status 0
    [ "$stderr" = "icn-pool: acknowledged by $PULL" ] || die "$stderr"
    run --separate-stderr icn-pool push --raw --connect "$PULL" --file "$frame"
    expect_status 0
    [ "$stderr" = "icn-pool: acknowledged by $PULL as a duplicate (stored before, not again)" ] || die "$stderr"
    icn-pool stats --connect "$REP" >stats.txt
    grep -qx "total: 2" stats.txt
    grep -qx "duplicates: 1" stats.txt
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    serve_small
    run --separate-stderr icn-pool push --raw --connect "$PULL" --file "$frame"
    expect_status 0
    [[ "$stderr" == *"as a duplicate"* ]] || die "$stderr"
    icn-pool stats --connect "$REP" --json >stats.json
    grep -q '"total":2,"rejected":0,"duplicates":1,' stats.json || die "$(cat stats.json)"
}

@test "icn-pool: kill -9 and restart on the same store loses nothing" {
    need_mnist
    start_pool pool.icnpool --fsync always
    icn-pool push --connect "$PULL" --file "$A50" --as-negatives 0 --quiet
    wait_total 50
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    start_pool pool.icnpool
    [ "$(pool_total)" = 50 ]
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 9 --generation 1 --quiet
    wait_total 70
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    [ "$(grep -c warning serve.err)" -eq 0 ] || die "$(cat serve.err)"
    icn-pool stats --store pool.icnpool >stats.txt
    grep -qx "total: 70" stats.txt
    grep -qx "class 0: 50" stats.txt
    grep -qx "class 9: 20" stats.txt
    [ "$(icn-pool dump --store pool.icnpool --quiet | icn-load --info - | sed -n 's/^images: //p')" = 70 ]
}

@test "icn-pool: a torn tail is cut off on restart with a warning; earlier records survive" {
    need_mnist
    start_pool pool.icnpool
    icn-pool push --connect "$PULL" --file "$A50" --as-negatives 4 --quiet
    wait_total 50
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 5 --quiet
    wait_total 70
    kill -9 "$POOL_PID"
    wait "$POOL_PID" 2>/dev/null || true
    local size
    size=$(stat -c %s pool.icnpool)
    truncate -s -3 pool.icnpool # into the commit marker of the second batch: all 20 of it goes
    # read-only tools report the torn tail and leave the file alone
    icn-pool stats --store pool.icnpool 2>ro.err >ro.txt
    grep -qx "total: 50" ro.txt
    grep -q "torn tail at byte [0-9]* (an uncommitted batch: 20 complete records, then short frame: .*ignored" ro.err
    [ "$(stat -c %s pool.icnpool)" -eq $((size - 3)) ]
    run icn-pool check --store pool.icnpool # a torn tail is not damage
    expect_status 0
    [[ "$output" == *"torn tail at byte"* ]]
    start_pool pool.icnpool
    grep -q "^icn-pool: warning: pool.icnpool: torn tail at byte [0-9]* (an uncommitted batch: 20 complete records, then short frame: .*): cut off .* bytes; the 50 committed records before it are intact" serve.err
    [ "$(pool_total)" = 50 ]
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 4 --quiet
    wait_total 70
    kill -TERM "$POOL_PID"
    wait "$POOL_PID"
    [ "$(icn-pool dump --store pool.icnpool --quiet | icn-load --info - | sed -n 's/^images: //p')" = 70 ]
    run icn-pool check --store pool.icnpool
    expect_status 0
    [[ "$output" == *"70 intact records in 2 commits; 0 damaged spans"*"no torn tail"* ]] || die "$output"
}

@test "icn-pool: damage is refused naming it; check lists every damaged record, repair salvages the rest" {
    need_mnist
    start_pool pool.icnpool
    icn-pool push --connect "$PULL" --file "$A50" --as-negatives 2 --quiet
    wait_total 50
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 3 --quiet
    wait_total 70
    kill -TERM "$POOL_PID"
    wait "$POOL_PID"
    local size uuid
    size=$(stat -c %s pool.icnpool)
    uuid=$(icn-pool stats --store pool.icnpool | sed -n 's/^uuid: //p')
    cp pool.icnpool clean.icnpool
    flip_byte pool.icnpool $((size / 4))     # inside the first batch
    flip_byte pool.icnpool $((size - 80))    # inside the LAST record: damage, not a torn tail
    run --separate-stderr icn-pool serve --store pool.icnpool --pull "$PULL" --rep "$REP"
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"pool.icnpool: record "*" at byte "*" is damaged (CRC-32"*"icn-pool repair --out NEW"* ]] || die "$stderr"
    [ "$(stat -c %s pool.icnpool)" -eq "$size" ] # nothing was cut
    run --separate-stderr icn-pool dump --store pool.icnpool
    expect_status 1
    one_line_error icn-pool
    run --separate-stderr icn-pool stats --store pool.icnpool
    expect_status 1

    run icn-pool check --store pool.icnpool
    expect_status 1
    [ "$(grep -c 'DAMAGE: record at byte [0-9]* is damaged' <<<"$output")" -eq 2 ] || die "$output"
    [[ "$output" == *"68 intact records in 2 commits; 2 damaged spans"*"no torn tail"* ]] || die "$output"
    run icn-pool check --store clean.icnpool
    expect_status 0

    run icn-pool repair --store pool.icnpool --out new.icnpool
    expect_status 0
    [[ "$output" == *"68 intact records copied"* ]] || die "$output"
    [ "$(stat -c %s pool.icnpool)" -eq "$size" ] # the damaged store is never written
    run icn-pool check --store new.icnpool
    expect_status 0
    [ "$(icn-pool dump --store new.icnpool --quiet | icn-load --info - | sed -n 's/^images: //p')" = 68 ]
    icn-pool dump --store new.icnpool --class 3 --quiet | icn-load --info - | grep -qx "images: 19"
    # the salvaged records are byte for byte the clean store's, without the two damaged ones
    local k
    k=$(icn-pool dump --store pool.icnpool 2>&1 | sed -n 's/.*: record \([0-9]*\) at byte.*/\1/p')
    [ "$k" -gt 0 ] && [ "$k" -lt 49 ] || die "first damaged record: '$k'"
    cmp <(icn-pool dump --store new.icnpool --count "$k" --quiet) <(icn-pool dump --store clean.icnpool --count "$k" --quiet)
    cmp <(icn-pool dump --store new.icnpool --from "$k" --quiet) \
        <(icn-pool dump --store clean.icnpool --from $((k + 1)) --count $((68 - k)) --quiet)
    [ "$(icn-pool stats --store new.icnpool | sed -n 's/^uuid: //p')" != "$uuid" ] # a new identity
    run --separate-stderr icn-pool repair --store pool.icnpool --out new.icnpool
    expect_status 1
    [[ "$stderr" == *"exists"* ]]
}

@test "icn-pool: the contract comes from serve's flags or the store, never from the first record" {
    need_mnist
    run --separate-stderr icn-pool serve --store new.icnpool --pull "$PULL" --rep "$REP"
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"a new pool needs its contract (icn-pool serve --shape HxWxC --classes K)"* ]]
    [ ! -e new.icnpool ] || die "a failed create left $(stat -c %s new.icnpool) bytes behind"
    run --separate-stderr icn-pool serve --store new.icnpool --shape 28x28 --classes 10
    expect_status 2
    run --separate-stderr icn-pool serve --store new.icnpool --shape 28x28x1
    expect_status 2
    [[ "$stderr" == *"--shape and --classes go together"* ]]
    start_pool pool.icnpool --quota 60
    # a 2x2x1 frame (with its origin, producer 1 seq 1) first locks nothing; 28x28x1 after it is stored
    "$PYTHON" -c 'import sys; sys.stdout.buffer.write(bytes([0x85,0xa4])+b"kind"+bytes([0xa5])+b"batch"+bytes([0xa5])+b"shape"+bytes([0x94,1,2,2,1,0xa1])+b"x"+bytes([0xc4,16])+bytes(16)+bytes([0xa8])+b"producer"+bytes([1,0xa3])+b"seq"+bytes([1]))' >tiny.bin
    run --separate-stderr icn-pool push --raw --connect "$PULL" --file tiny.bin --quiet
    expect_status 1
    [[ "$stderr" == *"refused by $PULL: refused (shape)"* ]] || die "$stderr"
    run --separate-stderr icn-pool push --raw --connect "$PULL" --quiet < <(printf '\xc1') # no msgpack at all
    expect_status 1
    icn-pool push --connect "$PULL" --file "$A50" --as-negatives 1 --quiet
    run --separate-stderr icn-pool push --connect "$PULL" --file "$A50" --as-negatives 12 --quiet # class 12 of 10
    expect_status 1
    run --separate-stderr icn-pool push --connect "$PULL" --file "$B20" --as-negatives 1 --quiet  # 70 > quota 60
    expect_status 1
    icn-pool push --connect "$PULL" --file "$B20" --as-negatives 1 --generation 1 --quiet
    [ "$(pool_total)" = 70 ]
    icn-pool stats --connect "$REP" >stats.txt
    grep -qx 'refused class from "local": 50' stats.txt || die "$(cat stats.txt)"
    grep -qx 'refused quota from "local": 20' stats.txt || die "$(cat stats.txt)"
    grep -qx 'refused shape from "local": 1' stats.txt || die "$(cat stats.txt)"
    grep -qx 'refused frame from "local": 1' stats.txt || die "$(cat stats.txt)"
    icn-pool stats --connect "$REP" --json >stats.json
    json_check stats.json 'len(d["uuid"]) == 36 and {"peer": "local", "reason": "class", "count": 50} in d["rejects"]'
    kill -TERM "$POOL_PID"
    wait "$POOL_PID"
    # serving the store again: its own contract, or the same flags; other flags are refused
    run --separate-stderr icn-pool serve --store pool.icnpool --shape 32x32x3 --classes 10 --pull "$PULL" --rep "$REP"
    expect_status 1
    [[ "$stderr" == *"the store's contract is 28x28x1, 10 classes, pixels in [-1, 1], quota 60 per peer and generation; asked for 32x32x3"* ]] || die "$stderr"
}

@test "icn-pool: no pool answering is an error within the timeout, not a hang" {
    run --separate-stderr timeout 20 icn-pool stats --connect "$REP" --timeout 300
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"pool at $REP did not answer within 300 ms"* ]]
    echo hello >x.bin
    run --separate-stderr timeout 20 icn-pool push --raw --connect "$PULL" --file x.bin --timeout 300
    expect_status 1
    one_line_error icn-pool
    [[ "$stderr" == *"no pool at $PULL took the frame within 300 ms"* ]]
    if have_mnist; then # batches: one line saying none was acknowledged
        run --separate-stderr timeout 20 icn-pool push --connect "$PULL" --file "$B20" --as-negatives 1 --timeout 300
        expect_status 1
        one_line_error icn-pool
        [[ "$stderr" == *"1 of 1 batches sent to $PULL were not acknowledged (0 acknowledged: 0 images; 0 refused; 1 unanswered"* ]] ||
            die "$stderr"
    fi
    run --separate-stderr icn-pool stats --store missing.icnpool
    expect_status 1
    [[ "$stderr" == *"missing.icnpool: No such file"* ]]
}
