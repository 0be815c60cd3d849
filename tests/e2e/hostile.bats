#!/usr/bin/env bats
# hostile.bats: outputs that are not regular files, inputs that are not regular files, and
# other hostile situations from issue 16 (each test failed before its fix).

load helpers

# A character device with /dev/null's numbers, made here (never the machine's own /dev/null).
make_null_device() {
    [ "$(id -u)" = 0 ] || skip "mknod needs root"
    mknod "$1" c "$(stat -c %t /dev/null | xargs printf '%d')" "$(stat -c %T /dev/null | xargs printf '%d')"
    [ -c "$1" ]
}

# What a path is: its type and, for a device, its numbers.
what_is() {
    stat -c '%F %t:%T' "$1"
}

@test "--out a character device or a FIFO: written in place, never replaced (finding 9)" {
    need_mnist
    make_null_device null
    before=$(what_is null)
    icn-load mnist --split test --limit 10 --quiet --out null
    [ "$(what_is null)" = "$before" ] || die "null became: $(what_is null)"
    [ -z "$(ls -A | grep -v '^null$')" ] || die "left behind: $(ls -A)"
    [ "$(wc -c <null)" -eq 0 ] # it still reads as /dev/null does

    # a model (icn-classify train --out) and a PNG (icn-eval grid --out) onto the device
    icn-load mnist --split test --limit 64 --quiet --out small.icn
    icn-classify train --data small.icn --arch c4 --steps 2 --batch 16 --quiet --out null
    [ "$(what_is null)" = "$before" ] || die "null became: $(what_is null) after a model"
    icn-classify train --data small.icn --arch c4 --steps 2 --batch 16 --quiet --out model.icn
    icn-classify predict --model model.icn --data small.icn --out null
    [ "$(what_is null)" = "$before" ] || die "null became: $(what_is null) after predictions"

    icn-eval grid --data small.icn --rows 2 --cols 2 --out null
    [ "$(what_is null)" = "$before" ] || die "null became: $(what_is null) after a PNG"

    # a FIFO with a reader gets the whole stream and stays a FIFO
    mkfifo fifo
    icn-load --info - <fifo >info.txt &
    reader=$!
    timeout 60 icn-load mnist --split test --limit 10 --quiet --out fifo
    wait "$reader"
    grep -qx "images: 10" info.txt
    [ -p fifo ] || die "fifo became: $(what_is fifo)"

    # and a regular file is still replaced atomically, keeping no temporary file
    icn-load mnist --split test --limit 10 --quiet --out file.icn
    [ -f file.icn ]
    [ -z "$(ls -A | grep '\.tmp\.')" ] || die "temporary files left: $(ls -A)"
}

@test "a FIFO given where a data file belongs is refused at once, in every reader (finding 4)" {
    mkfifo fifo
    for cmd in "icn-load cifar10 --dir . --split test" "icn-load svhn --dir . --split test" "icn-classify predict --model fifo --data -" \
               "icn-load --images fifo --labels fifo" "icn-eval plot --out x.png fifo"; do
        case $cmd in
        *cifar10*) mkfifo test_batch.bin ;;
        *svhn*) mkfifo test_32x32.mat ;;
        esac
        run --separate-stderr timeout 10 $cmd </dev/null
        [ "$status" -ne 124 ] || die "$cmd: hangs on a FIFO"
        [ "$status" -ne 0 ] || die "$cmd: accepted a FIFO"
        echo "$stderr" | grep -q "not a regular file" || die "$cmd: said: $stderr"
        [ "$(printf '%s\n' "$stderr" | grep -c .)" -eq 1 ] || die "$cmd: more than one line: $stderr"
    done
}

@test "under an address-space limit (ulimit -v 600000) a program answers or fails with one line, not spin (finding 8)" {
    need_mnist
    icn-load mnist --split test --limit 100 --quiet --out small.icn
    icn-classify train --data small.icn --steps 2 --batch 16 --quiet --out model.icn
    for limit in 600000 300000 120000; do
        run --separate-stderr bash -c "ulimit -v $limit && exec timeout 90 icn-eval error --model model.icn --data small.icn --json"
        [ "$status" -ne 124 ] || die "ulimit -v $limit: no answer in 90 s (spinning)"
        if [ "$status" -eq 0 ]; then
            [[ "$output" == *'"error":'* ]] || die "ulimit -v $limit: no test error in: $output"
        else
            one_line_error icn-eval || die "ulimit -v $limit: exit $status, stderr: $stderr"
        fi
    done
}
