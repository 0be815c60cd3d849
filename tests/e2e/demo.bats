#!/usr/bin/env bats
# demo.bats: pipelines/demo.sh (make demo) on real MNIST with a short schedule given as trainer
# flags: both test errors, McNemar's p, the pseudo-negatives PNG and the list of files; a second
# run replaces its own directory and refuses to touch one it did not make.

load helpers

PIPELINES=$BATS_TEST_DIRNAME/../../pipelines

@test "demo: both errors, McNemar's p, the pseudo-negatives by generation as a PNG, where every file is" {
    need_mnist
    short=(--initial-steps 40 --rounds 2 --round-steps 20 --per-class 2 --threads 1 --quiet)
    ICN_BIN=$ICN_BIN run --separate-stderr "$PIPELINES/demo.sh" --seed 3 --dir d -- "${short[@]}"
    expect_status 0
    [[ "$output" == *"images 500 seed 3 synthesizers 2: ICN test error "*"%"* ]] || die "no ICN error: $output"
    [[ "$output" == *"images 500 seed 3: baseline test error "*"%"* ]] || die "no baseline error: $output"
    [[ "$output" == *"McNemar exact p = "* ]] || die "no p-value: $output"
    [[ "$output" == *"demo: ICN "*" the baseline: "*" only ICN; McNemar exact p = "* ]] || die "no verdict: $output"
    for f in train.icn test.icn icn.model baseline.model icn-eval.json baseline-eval.json compare.json \
        pseudo-negatives.png pool.store icn.jsonl summary.txt; do
        [ -s "d/$f" ] || die "d/$f missing or empty"
        [[ "$output" == *"$f"* ]] || die "$f not listed: $output"
    done
    # the PNG: 2 generations (rows) of 10 classes (columns)
    [[ "$stderr" == *"pseudo-negatives.png: 2 x 10 (rows: generations, columns: classes)"* ]] || die "$stderr"
    "$PYTHON" -c 'import sys; b = open(sys.argv[1], "rb").read(8); assert b == b"\x89PNG\r\n\x1a\n"' d/pseudo-negatives.png
    json_check d/compare.json 'd["pooled"]["p_value"] <= 1 and d["pooled"]["only_a_wrong"] >= 0'
    # a second run replaces what the first made; a directory it did not make is left alone
    touch d/old-file
    ICN_BIN=$ICN_BIN run --separate-stderr "$PIPELINES/demo.sh" --seed 3 --dir d -- "${short[@]}"
    expect_status 0
    [ ! -e d/old-file ]
    mkdir mine && touch mine/precious
    ICN_BIN=$ICN_BIN run --separate-stderr "$PIPELINES/demo.sh" --dir mine
    expect_status 1
    [ -e mine/precious ]
    [[ "$stderr" == *"mine exists and is not a demo's directory"* ]] || die "$stderr"
}
