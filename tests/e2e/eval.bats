#!/usr/bin/env bats
# icn-eval fgsm, compare and grid on real MNIST with small models.

load helpers

setup_file() {
    cd "$BATS_FILE_TMPDIR"
    have_mnist || return 0
    icn-load mnist --split train --limit 500 --seed 1 --out train.icn --quiet
    icn-load mnist --split test --limit 300 --seed 2 --out test.icn --quiet
    icn-classify train --data train.icn --arch c8-c16 --steps 60 --batch 32 --seed 1 --out a.model --quiet
    icn-classify train --data train.icn --arch c8-c16 --steps 60 --batch 32 --seed 2 --out b.model --quiet
}

@test "fgsm: counts in both directions are consistent, and eps 0 fools nobody" {
    need_mnist
    d=$BATS_FILE_TMPDIR
    icn-eval fgsm --model-a "$d/a.model" --model-b "$d/b.model" --data "$d/test.icn" --json >r.json
    for dir in a_to_b b_to_a; do
        json_check r.json "d['$dir']['tested'] == 300 and 0 <= d['$dir']['fool_both'] <= d['$dir']['fool_source'] <= d['$dir']['correct'] <= 300"
        json_check r.json "d['$dir']['fool_source'] > 0"
    done
    icn-eval fgsm --model-a "$d/a.model" --model-b "$d/b.model" --data "$d/test.icn" --eps 0 --json >zero.json
    json_check zero.json "d['a_to_b']['fool_source'] == 0 and d['b_to_a']['fool_source'] == 0"
    # the correct counts are each model's own accuracy, as icn-eval error measures it
    icn-eval error --model "$d/a.model" --data "$d/test.icn" --json >err.json
    A_CORRECT=$("$PYTHON" -c 'import json; print(json.load(open("r.json"))["a_to_b"]["correct"])') \
        json_check err.json "d['n'] - d['wrong'] == int(os.environ['A_CORRECT'])"
}

@test "fgsm: both models are required; a damaged model is refused with one line" {
    need_mnist
    d=$BATS_FILE_TMPDIR
    run --separate-stderr icn-eval fgsm --model-a "$d/a.model" --data "$d/test.icn"
    expect_status 2
    one_line_error icn-eval
    cp "$d/b.model" bad.model
    flip_byte bad.model
    run --separate-stderr icn-eval fgsm --model-a "$d/a.model" --model-b bad.model --data "$d/test.icn"
    expect_status 1
    one_line_error icn-eval
}

@test "compare: a model against itself ties; two models' counts match their errors and pool over pairs" {
    need_mnist
    d=$BATS_FILE_TMPDIR
    icn-eval compare --model-a "$d/a.model" --model-b "$d/a.model" --data "$d/test.icn" --json >self.json
    json_check self.json "d['pooled']['only_a_wrong'] == d['pooled']['only_b_wrong'] == d['pooled']['disagree'] == 0"
    json_check self.json "d['pooled']['p_value'] == 1 and d['pooled']['n'] == 300"
    icn-eval error --model "$d/a.model" --data "$d/test.icn" --json >ea.json
    icn-eval error --model "$d/b.model" --data "$d/test.icn" --json >eb.json
    icn-eval compare --model-a "$d/a.model" --model-b "$d/b.model" --model-a "$d/b.model" --model-b "$d/a.model" \
        --data "$d/test.icn" --json >ab.json
    WA=$("$PYTHON" -c 'import json; print(json.load(open("ea.json"))["wrong"])') \
    WB=$("$PYTHON" -c 'import json; print(json.load(open("eb.json"))["wrong"])') \
        json_check ab.json "(d['pairs'][0]['wrong_a'], d['pairs'][0]['wrong_b']) == (int(os.environ['WA']), int(os.environ['WB']))"
    json_check ab.json "d['pairs'][0]['only_a_wrong'] + d['pairs'][0]['both_wrong'] == d['pairs'][0]['wrong_a'] and d['pairs'][0]['only_b_wrong'] + d['pairs'][0]['both_wrong'] == d['pairs'][0]['wrong_b']"
    json_check ab.json "d['pairs'][0]['only_a_wrong'] + d['pairs'][0]['only_b_wrong'] <= d['pairs'][0]['disagree'] <= 300 and 0 < d['pairs'][0]['p_value'] <= 1"
    # the second pair is the first swapped: pooled, the discordant counts balance
    json_check ab.json "d['pooled']['n'] == 600 and d['pooled']['only_a_wrong'] == d['pooled']['only_b_wrong'] and d['pooled']['p_value'] == 1"
    icn-eval compare --model-a "$d/a.model" --model-b "$d/b.model" --data "$d/test.icn" >ab.txt
    grep -q "McNemar exact p = " ab.txt
}

@test "compare: models must come in pairs; a damaged model is refused with one line" {
    need_mnist
    d=$BATS_FILE_TMPDIR
    run --separate-stderr icn-eval compare --model-a "$d/a.model" --model-b "$d/b.model" --model-a "$d/a.model" \
        --data "$d/test.icn"
    expect_status 2
    one_line_error icn-eval
    cp "$d/b.model" bad.model
    flip_byte bad.model
    run --separate-stderr icn-eval compare --model-a "$d/a.model" --model-b bad.model --data "$d/test.icn"
    expect_status 1
    one_line_error icn-eval
}

@test "grid: a PNG of test images decodes, with the size the grid implies; an empty stream is refused" {
    need_mnist
    icn-eval grid --data "$BATS_FILE_TMPDIR/test.icn" --rows 3 --cols 4 --zoom 1 --out g.png
    # 4 columns of 28 pixels + 5 gaps of 2 = 122 wide; 3 rows + 4 gaps = 92 high
    png_decodes g.png 122 92
    # from stdin, the rows the images need: 20 images in 5 columns are 4 rows
    icn-load mnist --split test --limit 20 --quiet | icn-eval grid --out s.png --cols 5 2>err.txt
    grep -q "wrote s.png: 4 x 5 images" err.txt
    [ "$(head -c 8 s.png | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
    # an empty stream: one line, exit 1, no file
    run --separate-stderr icn-eval grid --out g2.png </dev/null
    expect_status 1
    one_line_error icn-eval
    [[ "$stderr" == *"stdin: no images in the tensor stream"* ]]
    [ ! -e g2.png ]
}
