# pipelines/lib.sh: what the pipelines share; sourced (`. "$here/lib.sh"`), never run.
#
#   $bin              where the icn-* programs are: $ICN_BIN, else the build tree, else PATH
#   QUICK_TRAINER     the trainer flags of every --quick mode: a tiny net and a short schedule
#   machine           one line: CPU model, cores, memory
#   free_port_base    a port P such that P, P+1 and P+2 are free on 127.0.0.1
#   run_step [--stdout] DIR NAME RESULT CMD...
#                     run CMD (output in DIR/NAME.log) unless RESULT is already there; when it
#                     succeeds, append {"run","command","wall_s","machine",...} to DIR/runs.jsonl.
#                     --stdout: CMD's standard output is RESULT (written whole or not at all)
#   jobs_init PROG N DIR
#                     for --jobs N: runs started with `spawn` go N at a time, each in its own
#                     process group (an interrupt or TERM stops them all); N = 1: one after another
#   spawn NAME CMD... run CMD (a program or function) now or, with N > 1, in the background once
#                     fewer than N run; when it fails, NAME goes to DIR/failed-runs and the others go on
#   jobs_finish       wait for them all; 1 with a one-line error naming the failed runs, else 0
#   eval_json MODEL TEST OUT
#                     icn-eval error --json of MODEL on TEST into OUT, written whole or not at all
#   compare_pairs OUT BASELINE1 MODEL1 [BASELINE2 MODEL2]...
#                     icn-eval compare --json of every pair whose two models exist (one per seed),
#                     on the test.icn beside the first such baseline, into OUT; no OUT without a pair
#   quoted ARGS...    the arguments as one shell-quoted command line
#   usage             print the calling script's header comment (its --help)

here=${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
bin=${ICN_BIN:-$here/../build/bin}
[ -x "$bin/icn-classify" ] || bin=$(dirname "$(command -v icn-classify || echo /nonexistent/icn-classify)")
[ -d "$bin" ] && bin=$(cd "$bin" && pwd)
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

# --clip-grad 10: without it SGD with stop option 3 diverged at the start of round 1 in 1 to 2 of
# 6 seeds of table2 --quick (docs/RESULTS.md, "Why the clipping"); the full runs clip the same way.
QUICK_TRAINER=(--arch c16-c32 --initial-steps 100 --rounds 2 --round-steps 50 --per-class 5 --clip-grad 10)

machine() {
    local cpu mem
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
    mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
    echo "${cpu:-unknown CPU}, $(nproc) cores, ${mem:-? GiB} memory, $(uname -sr)"
}

free_port_base() {
    "$PYTHON" - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(20000, 60000)
    socks = []
    try:
        for p in range(base, base + 3):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
else:
    raise SystemExit("no three free ports in a row on 127.0.0.1")
PY
}

jobs_init() {
    jobs_prog=$1 jobs_max=$2 jobs_failed="$3/failed-runs"
    [[ "$jobs_max" =~ ^[1-9][0-9]*$ ]] || { echo "$jobs_prog: --jobs: '$jobs_max' is not a positive integer" >&2; exit 2; }
    rm -f "$jobs_failed"
    if [ "$jobs_max" -gt 1 ]; then
        set -m
        trap 'for p in $(jobs -p); do kill -TERM -- "-$p" 2>/dev/null || true; done
              echo "$jobs_prog: interrupted" >&2; exit 130' INT TERM
    fi
}

spawn() {
    local name=$1
    shift
    if [ "$jobs_max" = 1 ]; then
        "$@" || echo "$name" >>"$jobs_failed"
        return 0
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    { "$@" || echo "$name" >>"$jobs_failed"; } &
}

jobs_finish() {
    wait
    [ ! -s "$jobs_failed" ] && return 0
    echo "$jobs_prog: failed: $(tr '\n' ' ' <"$jobs_failed")(see their logs in $(dirname "$jobs_failed"))" >&2
    return 1
}

eval_json() {
    "$bin/icn-eval" error --model "$1" --data "$2" --json >"$3.tmp"
    mv "$3.tmp" "$3"
}

compare_pairs() {
    local out=$1 args=() test=""
    shift
    rm -f "$out"
    while [ $# -ge 2 ]; do
        if [ -s "$1" ] && [ -s "$2" ]; then
            args+=(--model-a "$1" --model-b "$2")
            [ -n "$test" ] || test="$(dirname "$1")/test.icn"
        fi
        shift 2
    done
    [ ${#args[@]} -gt 0 ] || return 0
    "$bin/icn-eval" compare "${args[@]}" --data "$test" --json >"$out.tmp"
    mv "$out.tmp" "$out"
}

quoted() {
    local out="" a q="'"
    for a in "$@"; do
        [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]] || a="'${a//$q/$q\\$q$q}'"
        out+="${out:+ }$a"
    done
    echo "$out"
}

run_step() {
    local to_result=0
    [ "$1" = --stdout ] && { to_result=1; shift; }
    local dir=$1 name=$2 result=$3
    shift 3
    if [ -s "$result" ]; then
        echo "$name: done already ($result)" >&2
        return 0
    fi
    local cmd start end rc=0 log="$dir/$name.log"
    cmd=$(quoted "$@")
    [ "$to_result" = 1 ] && cmd+=" > $(quoted "$result")"
    echo "$name: running $cmd" >&2
    start=$(date +%s.%N)
    if [ "$to_result" = 1 ]; then "$@" >"$result.tmp" 2>"$log" || rc=$?; else "$@" >"$log" 2>&1 || rc=$?; fi
    if [ "$rc" != 0 ]; then
        rm -f "$result.tmp"
        echo "$name: failed; the end of $log:" >&2
        tail -n 5 "$dir/$name.log" >&2
        return 1
    fi
    end=$(date +%s.%N)
    [ "$to_result" = 1 ] && mv "$result.tmp" "$result"
    [ -s "$result" ] || { echo "$name: finished without writing $result (see $dir/$name.log)" >&2; return 1; }
    "$PYTHON" -c 'import json, sys, time
print(json.dumps({"run": sys.argv[1], "command": sys.argv[2], "wall_s": round(float(sys.argv[4]) - float(sys.argv[3]), 1),
                  "machine": sys.argv[5], "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))' \
        "$name" "$cmd" "$start" "$end" "$(machine)" >>"$dir/runs.jsonl"
}

usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}\(.*\)/\1/p' "$0"
}
