#!/usr/bin/env bats
# tools.bats: the conventions every program keeps: --help, usage errors, no arguments.

load helpers

programs() {
    local p
    for p in "$ICN_BIN"/icn-*; do
        [ -x "$p" ] && [ -f "$p" ] && basename "$p"
    done
}

@test "the build has the core programs" {
    for p in icn-load icn-classify icn-eval; do
        [ -x "$ICN_BIN/$p" ] || die "missing $ICN_BIN/$p"
    done
}

@test "every program answers --help and -h with usage on stdout and exit 0" {
    local p n=0
    for p in $(programs); do
        for flag in --help -h; do
            run --separate-stderr timeout 10 "$p" "$flag"
            [ "$status" -eq 0 ] || die "$p $flag: exit $status"
            [[ "$output" == *usage* ]] || die "$p $flag: no usage text on stdout: ${output:0:200}"
            [ -z "$stderr" ] || die "$p $flag: wrote to stderr: $stderr"
        done
        n=$((n + 1))
    done
    [ "$n" -ge 3 ]
}

@test "every program refuses an unknown flag: exit 2, one line on stderr naming it" {
    local p
    for p in $(programs); do
        run --separate-stderr timeout 10 "$p" --no-such-flag </dev/null
        [ "$status" -eq 2 ] || die "$p --no-such-flag: exit $status, expected 2"
        one_line_error "$p" || die "$p --no-such-flag"
        [[ "$stderr" == *--no-such-flag* ]] || die "$p: error does not name the flag: $stderr"
        [ -z "$output" ] || die "$p --no-such-flag: wrote to stdout"
    done
}

@test "subcommands answer --help with exit 0" {
    for args in "icn-classify train" "icn-classify predict" "icn-eval error" "icn-eval grid"; do
        run --separate-stderr $args --help
        [ "$status" -eq 0 ] || die "$args --help: exit $status"
        [[ "$output" == *usage* ]] || die "$args --help: no usage on stdout"
    done
}

@test "subcommands refuse an unknown flag: exit 2, one line on stderr naming it" {
    for args in "icn-classify train" "icn-classify predict" "icn-eval error" "icn-eval grid"; do
        run --separate-stderr $args --no-such-flag </dev/null
        [ "$status" -eq 2 ] || die "$args --no-such-flag: exit $status, expected 2"
        [[ "$stderr" == *--no-such-flag* ]] || die "$args: error does not name the flag: $stderr"
        one_line_error "${args%% *}" || die "$args --no-such-flag"
    done
}

@test "a flag missing its value is a usage error (exit 2, one line)" {
    run --separate-stderr icn-load --limit
    expect_status 2
    one_line_error icn-load
    for args in "icn-classify train --steps" "icn-eval error --model"; do
        run --separate-stderr $args </dev/null
        [ "$status" -eq 2 ] || die "$args: exit $status, expected 2"
        one_line_error "${args%% *}" || die "$args"
    done
}

@test "bad flag values are usage errors naming the flag" {
    run --separate-stderr icn-load --limit lots
    expect_status 2
    one_line_error icn-load
    [[ "$stderr" == *--limit* ]]
    run --separate-stderr icn-load --split everything
    expect_status 2
    one_line_error icn-load
    [[ "$stderr" == *--split* ]]
    run --separate-stderr icn-load --classes 3,x
    expect_status 2
    one_line_error icn-load
    run --separate-stderr icn-load mnist extra
    expect_status 2
    one_line_error icn-load
    run --separate-stderr icn-load cifar
    expect_status 2
    one_line_error icn-load
    run --separate-stderr icn-classify train --steps 0 --out m.icn </dev/null
    expect_status 2
    one_line_error icn-classify
    [[ "$stderr" == *--steps* ]]
    run --separate-stderr icn-classify train --head tanh --out m.icn </dev/null
    expect_status 2
    one_line_error icn-classify
    run --separate-stderr icn-classify train --threads 0 --out m.icn </dev/null
    expect_status 2
    one_line_error icn-classify
    run --separate-stderr icn-eval error --model m.icn --threads many </dev/null
    expect_status 2
    one_line_error icn-eval
    run --separate-stderr icn-classify fly
    expect_status 2
    one_line_error icn-classify
    run --separate-stderr icn-eval speed
    expect_status 2
    one_line_error icn-eval
}

@test "required flags: train needs --out, predict and error need --model (exit 2)" {
    run --separate-stderr icn-classify train </dev/null
    expect_status 2
    one_line_error icn-classify
    [[ "$stderr" == *--out* ]]
    run --separate-stderr icn-classify predict </dev/null
    expect_status 2
    one_line_error icn-classify
    [[ "$stderr" == *--model* ]]
    run --separate-stderr icn-eval error </dev/null
    expect_status 2
    one_line_error icn-eval
    [[ "$stderr" == *--model* ]]
}

@test "icn-classify and icn-eval without arguments: usage on stderr, exit 2" {
    for p in icn-classify icn-eval; do
        run --separate-stderr "$p" </dev/null
        [ "$status" -eq 2 ] || die "$p: exit $status, expected 2"
        [[ "$stderr" == *usage* ]] || die "$p: no usage on stderr"
        [ -z "$output" ] || die "$p: wrote to stdout"
    done
}

@test "icn-load without arguments writes the MNIST training split" {
    need_mnist
    icn-load >train.icn 2>err.txt
    grep -q "wrote 55000 images 28x28x1 (split train)" err.txt
    run icn-load --info train.icn
    expect_status 0
    [ "${lines[0]}" = "images: 55000" ]
    [ "${lines[1]}" = "shape: 28x28x1" ]
}

@test "icn-load without a data set says how to fetch it" {
    mkdir empty
    run --separate-stderr env ICN_DATA="$PWD/empty" icn-load
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"icn-load --fetch mnist"* ]]
    [ -z "$output" ]
}

@test "ICN_MAX_FRAME that is not a number is refused" {
    run --separate-stderr env ICN_MAX_FRAME=big icn-load --info /dev/null
    expect_status 2
    one_line_error icn-load
    [[ "$stderr" == *ICN_MAX_FRAME* ]]
}
