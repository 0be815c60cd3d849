#!/usr/bin/env bash
# chaos.sh: a chaos soak of the distributed introspective pipeline (see --help).
set -uo pipefail

usage() {
    cat <<'EOF'
usage: tests/soak/chaos.sh [--out DIR] [--rounds R] [--liveness S] [--schedule FILE] DURATION SEED
       tests/soak/chaos.sh --help

A chaos soak in the spirit of Jepsen. A head (icn-pool serve and icn-classify train
--introspective, CURVE on) and three workers (icn-synthesize), each in its own network
namespace (tests/e2e/netns.bash: a bridge, veth pairs, 10.213.0.0/24 inside the namespaces
only, all removed at the end), train the c8-c16 net on 1,000 real MNIST images. For DURATION
seconds ("3m", "20m" also work) faults are injected at random every 20-60 s, from a schedule
drawn from SEED and printed first (the kinds in a shuffled cycle, so that any 7 faults in a
row cover every kind):

  synth-kill W     SIGKILL of worker W's synthesizer; 1 s later a new one (a new --id)
  synth-stop W     SIGSTOP of worker W's synthesizer for 30 s, then SIGCONT
  link-down W      worker W's eth0 down for 10 s
  pool-kill        SIGKILL of the pool; 1 s later a new one on the same store
  trainer-kill     SIGKILL of the trainer; 1 s later the same command with --resume
  subscribe-loop   for 20 s an allowed peer (its own key, worker 3's namespace) starts a
                   synthesizer and kills it after 0.2 s or 1.2 s, over and over
  conn-flood       for 15 s, 2,000 stalled TCP connections to the pool's intake, from inside
                   the head's namespace (tests/e2e/flood.py, loopback)

No fault is injected after DURATION or after the trainer has finished, but one: when the
trainer logs its tenth-last round, worker 3's link goes down for 10 s (link-down-at-end), so
that the trainer's "stop" and its last heartbeats are lost to that worker, which must find out
by itself (icn-synthesize(1), --liveness). Beside it, in a
namespace of its own (loopback), the same run with the same seeds and no faults: the
reference. At the end the soak checks, and prints as a table (DIR/table.md, DIR/table.json):

  - for every producer (each synthesizer incarnation has its own --id): acknowledged =
    stored = distinct for one that ended by itself; stored = distinct <= pushed (+
    one push sent, not yet logged) and acknowledged-so-far <= stored for one killed with SIGKILL; nothing stored from the
    subscribe loop's producers or from any producer the soak did not start;
  - the trainer finished every round (round R in its metrics, "done", exit 0, the model);
  - every synthesizer alive when the trainer ended has ended by itself, with its one line,
    within the bound icn-synthesize(1) documents after the trainer's end: --liveness + 5 s
    (last acknowledgements) + 2 s (a stopped process) + 10 s for one pass on a loaded
    machine; none ended while the trainer ran;
  - the model's test error on 2,000 MNIST test images is within 2 percentage points of the
    reference's (tests/soak/chaos_table.py says why a band; McNemar's p is printed beside).

Exit status: 0 when every check holds, 1 on any violation (each is listed), 2 on a usage
error. Needs root (ip netns), python3 with numpy, MNIST in the data directory, and the
programs in $ICN_BIN (default: build/bin of this tree). Run it under the shared lock:

  flock /tmp/icn-e2e.lock tests/soak/chaos.sh --out /tmp/chaos-20m 20m 1

Options:
  --out DIR        where logs, stores, models and the table go (default ./chaos-SEED);
                   an existing DIR is refused
  --rounds R       the trainer's rounds (default: 4 per second of DURATION, at least 20). The
                   faults stop at DURATION or at the trainer's end, whichever comes first, so
                   the trainer must outlast DURATION: on the loaded 2-core Zen 4 a round took
                   0.25 to 0.6 s under faults beside the reference run (the machine's other
                   work decides), so the soak lasts 1 to 2.5 x DURATION
  --schedule FILE  inject these faults instead of the seed's (lines "SECONDS KIND [WORKER]",
                   tab-separated, as the printed schedule; to replay or aim at one fault)
  --liveness S     the synthesizers' --liveness (default 30, icn-synthesize's default)
EOF
}

die() {
    echo "chaos.sh: $*" >&2
    return 1
}

OUT='' ROUNDS='' LIVENESS=30 SCHEDULE_FILE=''
while [ $# -gt 0 ]; do
    case $1 in
    --help | -h) usage; exit 0 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
    --liveness) LIVENESS=${2:?--liveness needs seconds}; shift 2 ;;
    --schedule) SCHEDULE_FILE=$(realpath "${2:?--schedule needs a file}") || exit 2; shift 2 ;;
    --) shift; break ;;
    -*) echo "chaos.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -eq 2 ] || { echo "chaos.sh: need DURATION and SEED (see --help)" >&2; exit 2; }
case $1 in
*m) DURATION=$((${1%m} * 60)) ;;
*s) DURATION=${1%s} ;;
*) DURATION=$1 ;;
esac
SEED=$2
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 30 ] || { echo "chaos.sh: DURATION must be at least 30 s" >&2; exit 2; }
[[ $SEED =~ ^[0-9]+$ ]] || { echo "chaos.sh: SEED must be a number" >&2; exit 2; }
[[ $LIVENESS =~ ^[0-9]+$ ]] && [ "$LIVENESS" -ge 5 ] || { echo "chaos.sh: --liveness must be at least 5" >&2; exit 2; }
[ -n "$ROUNDS" ] || ROUNDS=$((DURATION * 4))
[ "$ROUNDS" -ge 20 ] || ROUNDS=20

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ICN_BIN=$(cd "${ICN_BIN:-$REPO/build/bin}" && pwd) || exit 2
PATH="$ICN_BIN:$PATH"
export ICN_BIN PATH
export ICN_THREADS=${ICN_THREADS:-1}
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3) || { echo "chaos.sh: python3 not found" >&2; exit 2; }
FLOOD=$REPO/tests/e2e/flood.py
[ -f "$FLOOD" ] || { echo "chaos.sh: $FLOOD not found" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "chaos.sh: network namespaces need root" >&2; exit 2; }
for p in icn-pool icn-classify icn-synthesize icn-load icn-eval; do
    command -v "$p" >/dev/null || { echo "chaos.sh: $p not found in $ICN_BIN" >&2; exit 2; }
done
OUT=${OUT:-./chaos-$SEED}
[ -e "$OUT" ] && { echo "chaos.sh: $OUT exists" >&2; exit 2; }
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
cd "$OUT" || exit 2

# shellcheck source=../e2e/netns.bash
. "$REPO/tests/e2e/netns.bash"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f\n", b - a}'; }
log() { printf '[%7.1f s] %s\n' "$(since "$T0" "$(now)")" "$*" | tee -a events.log; }

T0=$(now)
VIOLATIONS=()
violation() {
    VIOLATIONS+=("$*")
    log "VIOLATION: $*"
}

# --- processes ------------------------------------------------------------------------------
# spawn NAME NS PROGRAM ARGS...: run PROGRAM in namespace NS in the background, stderr to
# NAME.log; a subshell waits for it and writes "STATUS TIME" to NAME.exit when it ends, and
# its PID is in NAME.pid. Sets PID.
HELPERS=()
spawn() {
    local name=$1 ns=$2
    shift 2
    rm -f "$name.pid" "$name.exit"
    (
        ip netns exec "$ns" "$@" 2>>"$name.log" &
        p=$!
        echo "$p" >"$name.pid"
        wait "$p"
        rc=$?
        echo "$rc $(date +%s.%N)" >"$name.exit"
    ) 2>/dev/null &
    HELPERS+=($!)
    for _ in $(seq 1 100); do [ -s "$name.pid" ] && break; sleep 0.02; done
    PID=$(cat "$name.pid")
}
ended() { [ -s "$1.exit" ]; }
exit_status() { cut -d' ' -f1 "$1.exit"; }
exit_time() { cut -d' ' -f2 "$1.exit"; }

cleanup() {
    local f p
    for f in *.pid; do
        [ -s "$f" ] || continue
        ended "${f%.pid}" && continue
        touch "${f%.pid}.killed-at-end"
        p=$(cat "$f")
        kill -CONT "$p" 2>/dev/null
        kill -9 "$p" 2>/dev/null
    done
    for p in "${HELPERS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ "${#NS_ALL[@]}" -gt 0 ] && netns_down
    [ -n "${NS_REF:-}" ] && netns_remove "$NS_REF"
    NS_REF=
}
trap cleanup EXIT
trap 'log "interrupted"; exit 1' INT TERM

# --- setup -----------------------------------------------------------------------------------
mkdir -p keys/allow
(cd keys && for k in head w1 w2 w3 peer; do icn-pool keygen "$k" >/dev/null || exit 1; done) ||
    { echo "chaos.sh: icn-pool keygen failed" >&2; exit 1; }
cp keys/*.pub keys/allow/
rm keys/allow/head.pub
cp keys/head.pub keys/allow/
icn-load mnist --split train --limit 1000 --seed 1 --out train.icn --quiet || exit 1
icn-load mnist --split test --limit 2000 --seed 1 --out test.icn --quiet || exit 1

NS_ALL=()
netns_up 3 || { echo "chaos.sh: could not create the namespaces" >&2; exit 1; }
NS_REF=$NS_TAG-ref
ip netns add "$NS_REF" && ip -n "$NS_REF" link set lo up || exit 1

SNAP=tcp://$HEAD_ADDR:$SNAP_PORT PUSH=tcp://$HEAD_ADDR:$PUSH_PORT REQ=tcp://$HEAD_ADDR:$REQ_PORT
DEAD_PUSH=tcp://$HEAD_ADDR:5599 # nothing listens there: the subscribe loop stores nothing
HEAD_SEC=(--secret-key keys/head.key --allow keys/allow)
POOL_ARGS=(--shape 28x28x1 --classes 10 --rep "$REQ" "${HEAD_SEC[@]}")
# the trainer: the netns tests' small introspective run, for ROUNDS rounds, with a checkpoint
# every round so that a killed trainer resumes where it was; --resume starts afresh when there
# is no checkpoint yet, so every start is the same command
TRAIN_ARGS=(--introspective --data train.icn --arch c8-c16 --batch 32 --pn-batch 16 --initial-steps 20
    --round-steps 15 --per-class 2 --rounds "$ROUNDS" --seed "$SEED" --clip-grad 10 --wait-timeout 600)
# --max-per-gen 1: each worker gives at most 1 pseudo-negative of a class per generation (a
# round needs 2: any two workers complete it), so the store grows by at most 30 a round
SYNTH_ARGS=(--seed "$SEED" --batch 2 --max-steps 20 --max-per-gen 1 --liveness "$LIVENESS")
# a synthesizer alive when the trainer ends ends within this (icn-synthesize(1), "The end of
# the run"): --liveness, 5 s for its last acknowledgements, 2 s when it was itself stopped,
# and 10 s for "one pass" on a machine this loaded (a pass of c8-c16 on 2 samples takes
# milliseconds when it has a core)
END_BOUND=$((LIVENESS + 5 + 2 + 10))

declare -A SYNTH_NAME SYNTH_INC KILLED
start_pool() {
    spawn pool "$NS_HEAD" icn-pool serve --store pool.store --intake "tcp://*:$PUSH_PORT" "${POOL_ARGS[@]}"
    POOL_PID=$PID
    log "pool started (pid $PID)"
}
start_trainer() {
    spawn trainer "$NS_HEAD" icn-classify train "${TRAIN_ARGS[@]}" --publish "$SNAP" --pool "$REQ" "${HEAD_SEC[@]}" \
        --checkpoint trainer.ck --checkpoint-every 15 --resume --out chaos.model --metrics trainer.jsonl
    TRAINER_PID=$PID
    log "trainer started (pid $PID)"
}
# start_synth W: worker W's next synthesizer; incarnation J has --id 10W+J (11, 21, 31 first)
start_synth() {
    local w=$1 ns=NS_W$1 id
    SYNTH_INC[$w]=$((${SYNTH_INC[$w]:-0} + 1))
    id=$((10 * w + SYNTH_INC[$w]))
    [ "${SYNTH_INC[$w]}" -le 9 ] || id=$((100 * w + SYNTH_INC[$w]))
    spawn "synth-$id" "${!ns}" icn-synthesize --snapshots "$SNAP" --pool "$PUSH" --id "$id" "${SYNTH_ARGS[@]}" \
        --metrics "synth-$id.jsonl" --secret-key "keys/w$w.key" --server-key keys/head.pub
    SYNTH_NAME[$w]=synth-$id
    echo "$id $w" >>producers.txt
    log "worker $w: synthesizer $id started (pid $PID)"
}

# the reference: the same run, no faults, all in one namespace on loopback
start_reference() {
    local L=tcp://127.0.0.1 w
    spawn ref-pool "$NS_REF" icn-pool serve --store ref-pool.store --intake "$L:$PUSH_PORT" --shape 28x28x1 \
        --classes 10 --rep "$L:$REQ_PORT" "${HEAD_SEC[@]}"
    spawn ref-trainer "$NS_REF" icn-classify train "${TRAIN_ARGS[@]}" --publish "$L:$SNAP_PORT" --pool "$L:$REQ_PORT" \
        "${HEAD_SEC[@]}" --out ref.model --metrics ref-trainer.jsonl --quiet
    for w in 1 2 3; do
        spawn "ref-synth-$((10 * w + 1))" "$NS_REF" icn-synthesize --snapshots "$L:$SNAP_PORT" --pool "$L:$PUSH_PORT" \
            --id $((10 * w + 1)) "${SYNTH_ARGS[@]}" --secret-key "keys/w$w.key" --server-key keys/head.pub
    done
    log "reference run started (namespace $NS_REF, loopback)"
}

# --- the schedule ----------------------------------------------------------------------------
if [ -n "$SCHEDULE_FILE" ]; then
    awk -F'\t' 'NF >= 2 && $1 !~ /^#/ {print $1 "\t" $2 "\t" ($3 == "" ? "-" : $3)}' "$SCHEDULE_FILE" >schedule.tsv
else "$PYTHON" - "$SEED" "$DURATION" >schedule.tsv <<'PY'
import random, sys
seed, duration = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
kinds = ["synth-kill", "synth-stop", "link-down", "pool-kill", "trainer-kill", "subscribe-loop", "conn-flood"]
t, cycle = 0.0, []
while True:
    t += rng.uniform(20, 60)
    if t > duration:
        break
    if not cycle:
        cycle = kinds[:]
        rng.shuffle(cycle)
    kind = cycle.pop(0)
    arg = rng.randint(1, 3) if kind in ("synth-kill", "synth-stop", "link-down") else "-"
    print("%.1f\t%s\t%s" % (t, kind, arg))
PY
fi
echo "# chaos soak: seed $SEED, $DURATION s of faults, $ROUNDS rounds, liveness $LIVENESS s, programs from $ICN_BIN"
echo "# schedule (seconds from the start, fault, worker):"
sed 's/^/#   /' schedule.tsv
mapfile -t SCHEDULE <schedule.tsv

# --- faults ----------------------------------------------------------------------------------
declare -A INJECTED
PENDING=() # "DUE ACTION ARG" lines, run by the main loop when due
later() { PENDING+=("$(awk -v t="$(now)" -v d="$1" 'BEGIN {printf "%.3f", t + d}') $2 $3"); }

subscribe_loop() { # 20 s of subscribe/kill cycles from an allowed peer, in worker 3's namespace
    local t_end=$(($(date +%s) + 20)) n=0 p
    while [ "$(date +%s)" -lt "$t_end" ]; do
        ip netns exec "$NS_W3" icn-synthesize --snapshots "$SNAP" --pool "$DEAD_PUSH" --id 900 --quiet \
            "${SYNTH_ARGS[@]}" --secret-key keys/peer.key --server-key keys/head.pub 2>/dev/null &
        p=$!
        if [ $((n % 2)) -eq 0 ]; then sleep 0.2; else sleep 1.2; fi
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
        n=$((n + 1))
        echo "$n cycles of subscribing and being killed" >"$1"
    done
}

inject() {
    local kind=$1 w=$2 name p
    case $kind in
    synth-kill)
        name=${SYNTH_NAME[$w]}
        ended "$name" && { log "fault $kind $w: skipped, $name has ended"; return; }
        KILLED[$name]=1
        kill -9 "$(cat "$name.pid")"
        log "fault: SIGKILL of worker $w's synthesizer ($name)"
        later 1 synth-start "$w"
        ;;
    synth-stop)
        name=${SYNTH_NAME[$w]}
        ended "$name" && { log "fault $kind $w: skipped, $name has ended"; return; }
        p=$(cat "$name.pid")
        kill -STOP "$p"
        log "fault: SIGSTOP of worker $w's synthesizer ($name) for 30 s"
        later 30 synth-cont "$p"
        ;;
    link-down)
        local ns=NS_W$w
        ip -n "${!ns}" link set eth0 down
        log "fault: worker $w's link down for 10 s"
        later 10 link-up "$w"
        ;;
    pool-kill)
        kill -9 "$POOL_PID"
        log "fault: SIGKILL of the pool"
        later 1 pool-start -
        ;;
    trainer-kill)
        KILLED[trainer-$TRAINER_PID]=1
        kill -9 "$TRAINER_PID"
        log "fault: SIGKILL of the trainer"
        later 1 trainer-start -
        ;;
    subscribe-loop)
        subscribe_loop "subscribe-loop-${INJECTED[$kind]:-0}.out" &
        HELPERS+=($!)
        log "fault: subscribe loop from an allowed peer for 20 s"
        ;;
    conn-flood)
        ip netns exec "$NS_HEAD" "$PYTHON" "$FLOOD" 127.0.0.1 "$PUSH_PORT" 2000 15 \
            >"conn-flood-${INJECTED[$kind]:-0}.out" 2>&1 &
        HELPERS+=($!)
        log "fault: 2000 stalled connections to the pool's intake for 15 s"
        ;;
    esac
    INJECTED[$kind]=$((${INJECTED[$kind]:-0} + 1))
}

# run_pending: the recovery actions that are due
run_pending() {
    local t rest=() line due action arg
    t=$(now)
    for line in "${PENDING[@]}"; do
        read -r due action arg <<<"$line"
        if awk -v a="$due" -v b="$t" 'BEGIN {exit !(a <= b)}'; then
            case $action in
            synth-start)
                if [ "$TRAINER_DONE" = 1 ]; then log "worker $arg: no new synthesizer, the trainer has finished"
                else start_synth "$arg"; fi ;;
            synth-cont) kill -CONT "$arg" 2>/dev/null; log "SIGCONT of pid $arg" ;;
            link-up)
                local ns=NS_W$arg
                ip -n "${!ns}" link set eth0 up
                netns_wait_link "$arg" || violation "worker $arg's link did not come back"
                log "worker $arg's link up" ;;
            pool-start) start_pool ;;
            trainer-start) start_trainer ;;
            esac
        else
            rest+=("$line")
        fi
    done
    PENDING=("${rest[@]}")
}

# --- the run ---------------------------------------------------------------------------------
T0=$(now)
start_reference
start_pool
start_trainer
for w in 1 2 3; do start_synth "$w"; done
TRAINER_DONE=0 T_END='' NEXT=0 END_FAULT=0
LIMIT=$((DURATION * 4 + 1200)) # the trainer must finish within this (a violation otherwise)
while :; do
    el=$(since "$T0" "$(now)")
    run_pending
    # the trainer
    if [ "$TRAINER_DONE" = 0 ] && ended trainer; then
        rc=$(exit_status trainer)
        if [ "${KILLED[trainer-$TRAINER_PID]:-0}" = 1 ]; then :
        elif [ "$rc" = 0 ]; then
            TRAINER_DONE=1 T_END=$(exit_time trainer)
            log "the trainer has finished (exit 0)"
        else
            violation "the trainer exited $rc: $(tail -1 trainer.log)"
            TRAINER_DONE=1 T_END=$(exit_time trainer)
        fi
    fi
    # the end's fault: worker 3 cut off from the trainer's tenth-last round until 10 s later (a
    # round takes 0.1 s on a quiet machine, 0.5 s loaded: the trainer ends while the link is down;
    # the third-last was passed between two looks of this loop on a quiet machine)
    if [ "$TRAINER_DONE" = 0 ] && [ "$END_FAULT" = 0 ] &&
        [ "$(tail -c 8192 trainer.jsonl 2>/dev/null | grep -o '"event":"round","round":[0-9]*' | tail -1 | grep -o '[0-9]*$')" \
            -ge $((ROUNDS - 10)) ] 2>/dev/null; then
        ip -n "$NS_W3" link set eth0 down
        log "fault: worker 3's link down for 10 s at the trainer's round $((ROUNDS - 10)) of $ROUNDS"
        later 10 link-up 3
        END_FAULT=1 INJECTED[link-down-at-end]=1
    fi
    # a fault, when one is due
    if [ "$TRAINER_DONE" = 0 ] && [ "$NEXT" -lt "${#SCHEDULE[@]}" ]; then
        IFS=$'\t' read -r at kind arg <<<"${SCHEDULE[$NEXT]}"
        if awk -v a="$at" -v b="$el" 'BEGIN {exit !(a <= b)}'; then
            inject "$kind" "$arg"
            NEXT=$((NEXT + 1))
        fi
    fi
    # a synthesizer that ended by itself while the trainer runs: a violation; a new one takes over
    for w in 1 2 3; do
        name=${SYNTH_NAME[$w]}
        if [ "$TRAINER_DONE" = 0 ] && [ "${KILLED[$name]:-0}" = 0 ] && ended "$name" && [ ! -e "$name.reported" ]; then
            touch "$name.reported"
            violation "$name ended (exit $(exit_status "$name")) while the trainer ran: $(tail -1 "$name.log")"
            start_synth "$w"
        fi
    done
    if [ "$TRAINER_DONE" = 1 ]; then
        # what is stopped or down comes back when its time is up, as if the trainer ran: a
        # worker whose link was down or who was stopped when the stop went out must find out
        # by itself (icn-synthesize(1): the heartbeats repeat it, --liveness bounds it)
        all=1
        [ "${#PENDING[@]}" -eq 0 ] || all=0
        for w in 1 2 3; do
            name=${SYNTH_NAME[$w]}
            [ "${KILLED[$name]:-0}" = 1 ] || ended "$name" || all=0
        done
        [ "$all" = 1 ] && break
        if awk -v a="$(since "$T_END" "$(now)")" -v b="$END_BOUND" 'BEGIN {exit !(a > b + 30)}'; then
            log "synthesizers still running $((END_BOUND + 30)) s after the trainer's end"
            break
        fi
    elif awk -v a="$el" -v b="$LIMIT" 'BEGIN {exit !(a > b)}'; then
        violation "the trainer has not finished after $LIMIT s"
        T_END=$(now)
        break
    fi
    sleep 0.2
done
T_STOP=$(now)

# the reference finishes (its workers end on its stop)
for _ in $(seq 1 $((LIMIT * 5))); do ended ref-trainer && break; sleep 0.2; done
ended ref-trainer && [ "$(exit_status ref-trainer)" = 0 ] ||
    violation "the reference trainer did not finish: $(tail -1 ref-trainer.log 2>/dev/null)"

# the pool's counters (duplicates since its last start), then the pools stop
STATS_JSON=$(ip netns exec "$NS_HEAD" icn-pool stats --connect "$REQ" --json "${HEAD_SEC[@]:0:2}" 2>&1) ||
    violation "icn-pool stats --connect failed: $STATS_JSON"
echo "$STATS_JSON" >pool-stats.json
for name in pool ref-pool; do
    ended "$name" || kill "$(cat "$name.pid")"
done
for _ in $(seq 1 100); do ended pool && ended ref-pool && break; sleep 0.1; done
for f in ref-synth-*.pid ; do ended "${f%.pid}" || kill "$(cat "$f")" 2>/dev/null; done
cleanup
trap - EXIT

# --- the checks ------------------------------------------------------------------------------
icn-pool dump --store pool.store --out stored.icn --quiet && icn-load stream stored.icn --npy-out stored --quiet ||
    violation "icn-pool dump of the store failed"
icn-eval compare --model-a ref.model --model-b chaos.model --data test.icn --json >compare.json 2>compare.log ||
    violation "icn-eval compare failed: $(tail -1 compare.log)"
printf '%s\n' "${VIOLATIONS[@]}" >violations.txt
for k in "${!INJECTED[@]}"; do echo "$k ${INJECTED[$k]}"; done >injected.txt
for k in "${!KILLED[@]}"; do echo "$k"; done >killed.txt
printf '{"seed": %s, "duration": %s, "rounds": %s, "liveness": %s, "end_bound": %s, "t0": %s, "t_end": "%s", "t_stop": %s}\n' \
    "$SEED" "$DURATION" "$ROUNDS" "$LIVENESS" "$END_BOUND" "$T0" "${T_END:-}" "$T_STOP" >run.json
"$PYTHON" "$HERE/chaos_table.py" --dir .
