#!/usr/bin/env bats
# classify.bats: icn-classify and icn-eval on real MNIST: training, evaluation, prediction,
# damaged model files, checkpoints, a killed run resumed, metrics.

load helpers

# One small net trained once for the file on 1000 real training images, evaluated on
# 1000 real test images (in $BATS_FILE_TMPDIR: train.icn, test.icn, model.icn, metrics.jsonl).
setup_file() {
    have_mnist || return 0
    cd "$BATS_FILE_TMPDIR"
    icn-load mnist --split train --limit 1000 --seed 1 --quiet >train.icn
    icn-load mnist --split test --limit 1000 --seed 2 --quiet >test.icn
    icn-classify train --data train.icn --arch c8-c16 --steps 60 --batch 32 --quiet \
        --out model.icn --metrics metrics.jsonl
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    need_mnist
    D=$BATS_FILE_TMPDIR
}

@test "a small net trained on 1000 images has a test error well below chance (< 50%)" {
    eval_error "$D/model.icn" "$D/test.icn" 1000
    echo "test error $PCT% ($WRONG of 1000)" >&3
    [ "$WRONG" -lt 500 ]
    awk -v p="$PCT" 'BEGIN { exit !(p < 50) }'
    # ten per-class lines and a 10x10 confusion matrix
    [ "$(printf '%s\n' "${lines[@]}" | grep -cE '^ +[0-9] +[0-9]+ +[0-9.]+%$')" -eq 10 ]
    [ "$(printf '%s\n' "${lines[@]}" | grep -cE '^( *[0-9]+){10}$')" -eq 10 ]
}

@test "icn-eval error --json: valid JSON, error in [0,1], a 10x10 confusion matrix summing to n" {
    icn-eval error --json --model "$D/model.icn" --data "$D/test.icn" >eval.json
    [ "$(wc -l <eval.json)" -eq 1 ]
    json_check eval.json '0 <= d["error"] <= 1 and d["n"] == 1000'
    json_check eval.json 'len(d["confusion"]) == 10 and all(len(r) == 10 for r in d["confusion"])'
    json_check eval.json 'sum(map(sum, d["confusion"])) == d["n"]'
    json_check eval.json 'd["n"] - sum(d["confusion"][k][k] for k in range(10)) == d["wrong"]'
    json_check eval.json 'abs(d["error"] - d["wrong"] / d["n"]) < 1e-6'
    json_check eval.json 'len(d["per_class_error"]) == 10 and all(0 <= e <= 1 for e in d["per_class_error"])'
    if command -v jq >/dev/null; then jq -e '.error < 0.5' eval.json >/dev/null; fi
}

@test "icn-eval reads the stream from stdin as well as from --data" {
    icn-eval error --model "$D/model.icn" --data "$D/test.icn" >a.txt
    icn-eval error --model "$D/model.icn" <"$D/test.icn" >b.txt
    diff a.txt b.txt
    icn-load mnist --split test --limit 1000 --seed 2 --quiet | icn-eval error --model "$D/model.icn" --data - >c.txt
    diff a.txt c.txt
}

@test "icn-eval --json quotes the model path correctly" {
    local m='odd "name\.icn'
    cp "$D/model.icn" "$m"
    icn-eval error --json --model "$m" --data "$D/test.icn" >eval.json
    M=$m json_check eval.json 'd["model"] == os.environ["M"]'
}

@test "icn-classify predict: one line per image, class probability label" {
    icn-classify predict --model "$D/model.icn" --data "$D/test.icn" >pred.txt
    [ "$(wc -l <pred.txt)" -eq 1000 ]
    awk 'NF != 3 || $1 !~ /^[0-9]$/ || $2 < 0.1 || $2 > 1 || $3 !~ /^[0-9]$/ { print "bad line " NR ": " $0; bad = 1 }
         END { exit bad }' pred.txt
    # the labels are the stream's, in order, and the mistakes are icn-eval's
    icn-load --info "$D/test.icn" | sed -n 's/^class \([0-9]\): /\1 /p' >hist.txt
    awk '{ n[$3]++ } END { for (k in n) print k, n[k] }' pred.txt | sort -n >hist2.txt
    diff hist.txt hist2.txt
    local wrong
    wrong=$(awk '$1 != $3' pred.txt | wc -l)
    icn-eval error --json --model "$D/model.icn" --data "$D/test.icn" >eval.json
    json_check eval.json "d['wrong'] == $wrong"
    # --out FILE and stdin
    icn-classify predict --model "$D/model.icn" --out pred2.txt <"$D/test.icn"
    cmp pred.txt pred2.txt
}

@test "a model file with one flipped byte fails to load: exit 1, one line about the checksum" {
    cp "$D/model.icn" bad.icn
    flip_byte bad.icn
    files_differ "$D/model.icn" bad.icn
    run --separate-stderr icn-eval error --model bad.icn --data "$D/test.icn"
    expect_status 1
    one_line_error icn-eval
    [[ "$stderr" == *checksum* ]]
    [[ "$stderr" == *bad.icn* ]]
    [ -z "$output" ]
    run --separate-stderr icn-classify predict --model bad.icn --data "$D/test.icn"
    expect_status 1
    one_line_error icn-classify
    [[ "$stderr" == *checksum* ]]
    [ -z "$output" ]
}

@test "truncated, empty, missing and non-model files are refused as models, one line each" {
    local size
    size=$(stat -c %s "$D/model.icn")
    head -c $((size / 2)) "$D/model.icn" >half.icn
    head -c $((size - 1)) "$D/model.icn" >short.icn
    : >empty.icn
    for m in half.icn short.icn empty.icn missing.icn "$D/test.icn" /dev/null; do
        run --separate-stderr icn-eval error --model "$m" --data "$D/test.icn"
        [ "$status" -eq 1 ] || die "--model $m: exit $status"
        one_line_error icn-eval
    done
    run --separate-stderr icn-eval error --model "$D/test.icn" --data "$D/test.icn"
    [[ "$stderr" == *"not a model"* ]]
    # and a model where the data should be
    run --separate-stderr icn-eval error --model "$D/model.icn" --data "$D/model.icn"
    expect_status 1
    one_line_error icn-eval
    [[ "$stderr" == *"'model'"* ]]
}

@test "labels outside the model's classes are refused" {
    icn-load mnist --split test --classes 0,1,2 --limit 100 --quiet >three.icn
    icn-classify train --data three.icn --arch c4 --steps 5 --batch 8 --quiet --out m3.icn
    run --separate-stderr icn-eval error --model m3.icn --data "$D/test.icn"
    expect_status 1
    one_line_error icn-eval
    [[ "$stderr" == *label* ]]
    run --separate-stderr icn-eval error --model m3.icn --data three.icn
    expect_status 0
}

@test "--metrics writes JSON lines, every one parses, the last event is done" {
    jsonl_events "$D/metrics.jsonl" >events.txt
    [ "$(tail -n 1 events.txt)" = done ]
    [ "$(grep -c '^step$' events.txt)" -eq 6 ] # every 10 steps of 60
    "$PYTHON" -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r["step"] for r in recs if r["event"] == "step"]
assert steps == sorted(steps) and steps[-1] == 60, steps
assert all(r["loss"] >= 0 and r["lr"] > 0 for r in recs if r["event"] == "step")
assert recs[-1]["steps"] == 60
' "$D/metrics.jsonl"
    # with a validation stream, eval events carry the validation error; "-" is stdout
    icn-classify train --data "$D/train.icn" --arch c4 --steps 20 --batch 16 --quiet --out m.icn \
        --val "$D/test.icn" --eval-every 10 --metrics - >stdout.jsonl
    jsonl_events stdout.jsonl >events2.txt
    [ "$(grep -c '^eval$' events2.txt)" -eq 2 ]
    [ "$(tail -n 1 events2.txt)" = done ]
    "$PYTHON" -c '
import json, sys
assert all(0 <= r["val_error"] <= 1 for r in map(json.loads, open(sys.argv[1])) if r["event"] == "eval")
' stdout.jsonl
}

@test "--keep-best keeps the model of lowest validation error; it needs --val" {
    icn-classify train --data "$D/train.icn" --arch c4 --steps 45 --batch 16 --lr 0.05 --quiet --out m.icn \
        --val "$D/test.icn" --eval-every 10 --keep-best best.icn --metrics m.jsonl
    icn-eval error --json --model best.icn --data "$D/test.icn" >best.json
    # evaluated every 10 steps and at the end; kept exactly when better than every earlier point
    "$PYTHON" - m.jsonl best.json <<'PY'
import json, sys
evals = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "eval"]
assert [e["step"] for e in evals] == [10, 20, 30, 40, 45], evals
best, best_step = float("inf"), None
for e in evals:
    assert e["kept"] == (e["val_error"] < best), evals
    if e["kept"]:
        best, best_step = e["val_error"], e["step"]
kept = json.load(open(sys.argv[2]))
assert abs(kept["error"] - best) < 1e-9 and kept["step"] == best_step, (kept["step"], evals)
PY
    run --separate-stderr icn-classify train --data "$D/train.icn" --steps 5 --out m2.icn --keep-best b2.icn
    expect_status 2
    [ "${#stderr_lines[@]}" -eq 1 ] && [[ "$stderr" == *"--keep-best needs --val"* ]]
    [ ! -e m2.icn ] && [ ! -e b2.icn ]
}

@test "--epochs E sets the steps to E passes over the data" {
    icn-classify train --data "$D/train.icn" --arch c4 --epochs 1 --batch 32 --quiet --out m.icn --metrics met.jsonl
    [ "$(tail -n 1 met.jsonl)" != "" ]
    json_check <(tail -n 1 met.jsonl) 'd["event"] == "done" and d["steps"] == 32' # ceil(1000 / 32)
}

@test "the one-vs-all head trains, predicts sigmoid scores and is stored in the model" {
    icn-classify train --data "$D/train.icn" --arch c4-c8 --head ova --steps 60 --batch 32 --quiet --out ova.icn
    icn-eval error --json --model ova.icn --data "$D/test.icn" >eval.json
    json_check eval.json 'd["error"] < 0.9'
    icn-classify predict --model ova.icn --data "$D/test.icn" >pred.txt
    [ "$(wc -l <pred.txt)" -eq 1000 ]
    awk '$2 <= 0 || $2 >= 1 { bad = 1 } END { exit bad }' pred.txt
}

@test "predict and publish refuse flags that only train uses, naming them" {
    run --separate-stderr icn-classify predict --model "$D/model.icn" --data "$D/test.icn" --steps 5
    expect_status 2
    [ "${#stderr_lines[@]}" -eq 1 ] && [[ "$stderr" == *"--steps does not apply to predict"* ]] || die "$stderr"
    run --separate-stderr icn-classify publish --model "$D/model.icn" --rounds 3 --count 1
    expect_status 2
    [[ "$stderr" == *"--rounds does not apply to publish"* ]] || die "$stderr"
    run --separate-stderr icn-classify train --data "$D/train.icn" --bump --out never.icn
    expect_status 2
    [[ "$stderr" == *"--bump does not apply to train"* ]] || die "$stderr"
    [ ! -e never.icn ]
}

@test "label smoothing with the one-vs-all head is refused, not ignored" {
    run icn-classify train --data "$D/train.icn" --arch c4-c8 --head ova --label-smoothing 0.1 --steps 5 --out ls.icn
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == *"--label-smoothing is for the softmax head"* ]]
    [ ! -e ls.icn ]
}

@test "--checkpoint: a 40-step run with --checkpoint-every 20 leaves a loadable checkpoint" {
    icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 40 --batch 32 --quiet \
        --checkpoint ck.icn --checkpoint-every 20 --out m.icn
    [ -s ck.icn ]
    [ -s m.icn ]
    # a checkpoint is a model file (with optimizer state): it evaluates like the final model
    icn-eval error --model ck.icn --data "$D/test.icn" | tail -n +2 >ck.txt
    icn-eval error --model m.icn --data "$D/test.icn" | tail -n +2 >m.txt
    diff ck.txt m.txt
    [ "$(stat -c %s ck.icn)" -gt "$(stat -c %s m.icn)" ]
    # --resume of a finished run does no more steps and writes the same model
    cp m.icn m-first.icn
    run --separate-stderr icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 40 --batch 32 \
        --checkpoint ck.icn --checkpoint-every 20 --out m.icn --resume
    expect_status 0
    [[ "$stderr" == *"resuming from ck.icn at step 40"* ]]
    cmp m.icn m-first.icn
    # a checkpoint of another run is refused
    run --separate-stderr icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 40 --batch 32 --seed 2 \
        --checkpoint ck.icn --out m2.icn --resume --quiet
    expect_status 1
    one_line_error icn-classify
    [[ "$stderr" == *"another run"* ]]
    [ ! -e m2.icn ]
    # ... and so is one trained with other settings, naming the first difference each way,
    # unless --new-settings says so
    cp ck.icn ck-before.icn
    run --separate-stderr icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 40 --batch 32 --lr 0.01 \
        --checkpoint ck.icn --out m2.icn --resume --quiet
    expect_status 1
    one_line_error icn-classify
    [[ "$stderr" == *"checkpoint was trained with lr=0.025, this run asks for lr=0.01"* ]] || die "$stderr"
    [ ! -e m2.icn ]
    cmp ck.icn ck-before.icn
    run --separate-stderr icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 40 --batch 32 --lr 0.01 \
        --checkpoint ck.icn --out m2.icn --resume --new-settings --quiet
    expect_status 0
    [[ "$stderr" == *"ck.icn: resuming with lr=0.01 (the checkpoint had lr=0.025)"* ]] || die "$stderr"
    [ -s m2.icn ]
}

@test "kill -9 during training: the stored checkpoint loads, and --resume ends where an unbroken run ends" {
    local args=(--data "$D/train.icn" --arch c4-c8 --steps 6000 --batch 16 --lr 0.01 --threads 1
        --checkpoint-every 200)
    # the reference: the same run, never interrupted
    icn-classify train "${args[@]}" --quiet --checkpoint ref-ck.icn --out ref.icn
    # the victim
    icn-classify train "${args[@]}" --quiet --checkpoint ck.icn --out m.icn --metrics met.jsonl \
        >/dev/null 2>victim.err 3>&- &
    local pid=$! i
    for i in $(seq 600); do
        [ -e ck.icn ] && break
        sleep 0.05
    done
    [ -e ck.icn ] || { kill -9 "$pid"; die "no checkpoint after 30 s"; }
    sleep 0.2
    kill -0 "$pid" 2>/dev/null || die "the run ended before it could be killed (make it longer)"
    kill -9 "$pid"
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 137 ] || die "victim exit $rc, expected 137 (killed)"
    [ ! -e m.icn ]
    # the checkpoint written before the kill is whole: it loads as a model
    run --separate-stderr icn-eval error --json --model ck.icn --data "$D/test.icn"
    expect_status 0
    # resume: picks up at the checkpoint's step and finishes
    run --separate-stderr icn-classify train "${args[@]}" --checkpoint ck.icn --out m.icn --metrics met.jsonl --resume
    expect_status 0
    [[ "$stderr" =~ resuming\ from\ ck.icn\ at\ step\ ([0-9]+) ]] || die "no resume message: $stderr"
    local k=${BASH_REMATCH[1]}
    echo "killed run resumed at step $k" >&3
    [ "$k" -gt 0 ] && [ "$k" -lt 6000 ] && [ $((k % 200)) -eq 0 ]
    # ... bit for bit where the unbroken run ended
    cmp m.icn ref.icn
    cmp ck.icn ref-ck.icn
    [ "$(jsonl_events met.jsonl | tail -n 1)" = done ]
}

@test "ICN_CONV=reference trains on the im2col + OpenBLAS path, close to the oneDNN path; an unknown value is refused" {
    ICN_CONV=reference icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 60 --batch 32 --quiet --out ref.icn
    eval_error ref.icn "$D/test.icn" 1000
    ref=$WRONG
    eval_error "$D/model.icn" "$D/test.icn" 1000
    echo "test errors: reference path $ref, oneDNN path $WRONG of 1000" >&3
    # the same seed and data; the two paths round differently, so the models differ a little
    [ $((ref - WRONG)) -le 20 ] && [ $((WRONG - ref)) -le 20 ]
    run icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 1 --out x.icn --quiet
    [ "$status" -eq 0 ]
    ICN_CONV=bogus run icn-classify train --data "$D/train.icn" --arch c8-c16 --steps 1 --out x.icn --quiet
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == *"ICN_CONV='bogus': expected 'reference' or 'fast'"* ]]
}
