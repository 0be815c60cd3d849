#!/bin/bash
# Run the C unit tests (cmocka), the Bats end-to-end tests and the libFuzzer harnesses; end with
# "N passed, N failed".
# Usage: tests/run.sh [unit|e2e|fuzz]   (default: all three)
# fuzz: `make fuzz` (clang, ASan+UBSan, build-fuzz/), then each harness re-runs its checked-in
# corpus and fuzzes for ICN_FUZZ_SECONDS (default 12); each harness is one pass or fail.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD ICN_BIN="$PWD/$BUILD/bin"
what=${1:-all}
passed=0 failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        echo "== $(basename "$t")"
        # cmocka's standard output: one "[       OK ]" / "[  FAILED  ]" line per test.
        "$t" >"$log" 2>&1
        rc=$?
        cat "$log"
        ok=$(grep -c '^\[       OK \]' "$log")
        bad=$(grep -c '^\[  FAILED  \] [a-z_]' "$log")
        if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; echo "!! $(basename "$t") exited $rc"; fi
        passed=$((passed + ok)); failed=$((failed + bad))
    done
fi

if [ "$what" = all ] || [ "$what" = e2e ]; then
    echo "== bats tests/e2e"
    bats --tap tests/e2e >"$log" 2>&1
    cat "$log"
    ok=$(grep -c '^ok ' "$log")
    bad=$(grep -c '^not ok ' "$log")
    passed=$((passed + ok)); failed=$((failed + bad))
fi

if [ "$what" = all ] || [ "$what" = fuzz ]; then
    echo "== fuzz tests/fuzz"
    if make --no-print-directory fuzz >"$log" 2>&1; then
        tests/fuzz/run.sh ci "${ICN_FUZZ_SECONDS:-12}" >"$log" 2>&1
        cat "$log"
        ok=$(grep -c '^ok fuzz ' "$log")
        bad=$(grep -c '^not ok fuzz ' "$log")
    else
        tail -20 "$log"
        echo "not ok fuzz: make fuzz failed"
        ok=0 bad=1
    fi
    passed=$((passed + ok)); failed=$((failed + bad))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
