#!/bin/bash
# Run the libFuzzer harnesses built by `make fuzz` (build-fuzz/fuzz_*), each on a copy of its
# checked-in seed corpus (tests/fuzz/corpus/<harness>/, never modified here).
#   tests/fuzz/run.sh ci [SECONDS]   re-run every checked-in input, then fuzz SECONDS (default 12)
#                                    each; one "ok"/"not ok" line per harness (CI: tests/run.sh fuzz)
#   tests/fuzz/run.sh long RUNS      fuzz RUNS executions each; one table row per harness:
#                                    | harness | seconds | executions | cov | crashes |
# FUZZ_ONLY="fuzz_batch fuzz_idx" runs only those harnesses.
# A crash leaves its input in $FUZZ_OUT/<harness>/ (crash-*, oom-*, timeout-*): copy it into the
# corpus as regress-<what> once fixed, so that every later run replays it.
set -u
cd "$(dirname "$0")/../.."
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
mode=${1:-ci}
arg=${2:-}
out=${FUZZ_OUT:-$(mktemp -d /tmp/icn-fuzz-XXXXXX)}
mkdir -p "$out"
export ICN_MAX_FRAME=${ICN_MAX_FRAME:-67108864}
common=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=25 -print_final_stats=1)
status=0
for bin in "$FUZZ_BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    h=$(basename "$bin")
    [ -z "${FUZZ_ONLY:-}" ] || [[ " $FUZZ_ONLY " == *" $h "* ]] || continue
    seeds=tests/fuzz/corpus/$h
    work=$out/$h
    rm -rf "$work" && mkdir -p "$work/corpus"
    log=$work/log
    start=$(date +%s.%N)
    if [ "$mode" = ci ]; then
        # every checked-in input (seeds and regressions) once, then a short bounded run
        "$bin" "${common[@]}" -runs=0 "$seeds" >"$log" 2>&1 &&
            "$bin" "${common[@]}" -max_total_time="${arg:-12}" -artifact_prefix="$work/" "$work/corpus" "$seeds" >>"$log" 2>&1
        rc=$?
    else
        "$bin" "${common[@]}" -runs="${arg:-1000000}" -artifact_prefix="$work/" "$work/corpus" "$seeds" >"$log" 2>&1
        rc=$?
    fi
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$(find "$work" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'oom-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'leak-*' | wc -l)
    [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes=1
    if [ "$mode" = ci ]; then
        if [ "$rc" -eq 0 ]; then echo "ok fuzz $h: ${execs:-?} executions in $(printf %.0f "$secs") s, cov ${cov:-?}"
        else echo "not ok fuzz $h (exit $rc; see $log)"; grep -m3 -E '^==[0-9]+==ERROR|SUMMARY|^icn|exited' "$log"; status=1; fi
    else
        printf '| %s | %.0f | %s | %s | %s |\n' "$h" "$secs" "${execs:-?}" "${cov:-?}" "$crashes"
        [ "$rc" -eq 0 ] || status=1
    fi
done
[ -n "${FUZZ_OUT:-}" ] || [ "$status" -ne 0 ] || rm -rf "$out"
exit $status
