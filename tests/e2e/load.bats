#!/usr/bin/env bats
# load.bats: icn-load on the real MNIST files, and every reader's defences against bad streams.

load helpers

# `icn-load --info` of a stream: the value of its "images:" line.
count_images() {
    icn-load --info "$1" | sed -n 's/^images: //p'
}

@test "the MNIST test split: 10000 images of 28x28x1, all ten digits, pixels in [-1, 1]" {
    need_mnist
    icn-load mnist --split test --quiet | icn-load --info - >info.txt
    grep -qx "images: 10000" info.txt
    grep -qx "shape: 28x28x1" info.txt
    grep -qx "labels: yes" info.txt
    grep -qx "provenance: no" info.txt
    [ "$(grep -c '^class [0-9]: ' info.txt)" -eq 10 ]
    # the histogram adds up, and is MNIST's (980 zeros, 1135 ones in t10k)
    [ "$(awk '/^class [0-9]: /{s += $3} END {print s}' info.txt)" -eq 10000 ]
    grep -qx "class 0: 980" info.txt
    grep -qx "class 1: 1135" info.txt
    grep -qx "pixels: min -1 max 1 mean .*" info.txt
}

@test "the paper's split: train 55000 and val 5000 images" {
    need_mnist
    icn-load --split train 2>err.txt | icn-load --info - >train.txt
    grep -q "wrote 55000 images 28x28x1 (split train)" err.txt
    grep -qx "images: 55000" train.txt
    icn-load --split val --quiet | icn-load --info - >val.txt
    grep -qx "images: 5000" val.txt
    grep -qx "shape: 28x28x1" val.txt
}

@test "--limit and --seed: the same seed gives the same bytes, another seed others" {
    need_mnist
    icn-load --split test --limit 500 --seed 3 --quiet >a.icn
    icn-load --split test --limit 500 --seed 3 --quiet >b.icn
    icn-load --split test --limit 500 --seed 4 --quiet >c.icn
    cmp a.icn b.icn
    files_differ a.icn c.icn
    [ "$(count_images a.icn)" -eq 500 ]
    [ "$(count_images c.icn)" -eq 500 ]
    # a limit at or above the count keeps everything
    icn-load --split val --limit 100000 --quiet >all.icn
    [ "$(count_images all.icn)" -eq 5000 ]
}

@test "--out FILE writes the same bytes as stdout; --chunk changes frames, not images" {
    need_mnist
    icn-load --split test --limit 300 --seed 2 --quiet >stdout.icn
    icn-load --split test --limit 300 --seed 2 --quiet --out file.icn
    cmp stdout.icn file.icn
    icn-load --split test --limit 300 --seed 2 --quiet --chunk 7 >chunked.icn
    files_differ stdout.icn chunked.icn
    icn-load --info stdout.icn >i1.txt
    icn-load --info chunked.icn >i2.txt
    diff i1.txt i2.txt
}

@test "--classes 3,7 keeps only those labels, and composes with --limit" {
    need_mnist
    icn-load --split test --classes 3,7 --quiet | icn-load --info - >info.txt
    [ "$(grep -c '^class ' info.txt)" -eq 2 ]
    grep -qx "class 3: 1010" info.txt
    grep -qx "class 7: 1028" info.txt
    grep -qx "images: 2038" info.txt
    icn-load --split test --classes 3,7 --limit 100 --seed 5 --quiet | icn-load --info - >info2.txt
    grep -qx "images: 100" info2.txt
    [ "$(grep -c '^class [37]: ' info2.txt)" -eq 2 ]
    [ "$(grep -c '^class ' info2.txt)" -eq 2 ]
    # labels that select nothing are an error, not an empty stream
    run --separate-stderr icn-load --split test --classes 20
    expect_status 1
    one_line_error icn-load
}

@test "explicit --images/--labels files give the same stream as the named data set" {
    need_mnist
    local d
    d="$(icn_data_dir)/mnist"
    local img=$d/t10k-images-idx3-ubyte lab=$d/t10k-labels-idx1-ubyte
    [ -f "$img" ] || img=$img.gz
    [ -f "$lab" ] || lab=$lab.gz
    icn-load --images "$img" --labels "$lab" --limit 50 --seed 4 --quiet >explicit.icn
    icn-load mnist --split test --limit 50 --seed 4 --quiet >named.icn
    cmp explicit.icn named.icn
    # --images without --labels is a usage error
    run --separate-stderr icn-load --images "$img"
    expect_status 2
    one_line_error icn-load
}

@test "a truncated IDX file is refused with one line naming it" {
    need_mnist
    local d
    d="$(icn_data_dir)/mnist"
    [ -f "$d/t10k-images-idx3-ubyte" ] && [ -f "$d/t10k-labels-idx1-ubyte" ] || skip "MNIST is stored compressed"
    head -c 100000 "$d/t10k-images-idx3-ubyte" >short-images
    run --separate-stderr icn-load --images short-images --labels "$d/t10k-labels-idx1-ubyte"
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *short-images* ]]
    [ -z "$output" ]
    # image and label files of different lengths
    run --separate-stderr icn-load --images "$d/t10k-images-idx3-ubyte" --labels "$d/train-labels-idx1-ubyte"
    expect_status 1
    one_line_error icn-load
}

@test "a truncated stream fails with one line saying so, in every reader" {
    need_mnist
    icn-load --split test --limit 1000 --quiet >full.icn
    local size
    size=$(stat -c %s full.icn)
    for n in 1 7 100000 $((size / 2)) $((size - 1)); do
        head -c "$n" full.icn >cut.icn
        run --separate-stderr icn-load --info - <cut.icn
        [ "$status" -eq 1 ] || die "icn-load --info, $n bytes: exit $status"
        one_line_error icn-load
        [[ "$stderr" == *truncated* ]] || die "icn-load --info, $n bytes: $stderr"
        run --separate-stderr icn-classify train --arch c4 --steps 1 --out m.icn <cut.icn
        [ "$status" -eq 1 ] || die "icn-classify train, $n bytes: exit $status"
        one_line_error icn-classify
        [[ "$stderr" == *truncated* ]] || die "icn-classify train, $n bytes: $stderr"
        [ ! -e m.icn ]
    done
    # through a pipe as well
    run --separate-stderr bash -c 'head -c 100000 full.icn | icn-load --info -'
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *truncated* ]]
    # a stream cut exactly between two frames is a shorter valid stream
    icn-load --split test --limit 1000 --chunk 500 --quiet >two.icn
    head -c $(($(stat -c %s two.icn) / 2)) two.icn >half.icn
    [ "$(count_images half.icn)" -eq 500 ]
}

@test "garbage bytes are refused quickly, without a crash" {
    local i
    for i in 1 2 3 4 5; do
        head -c 1000 /dev/urandom >garbage.bin
        for cmd in "icn-load --info garbage.bin" "icn-classify train --arch c4 --steps 1 --out m.icn --data garbage.bin"; do
            run --separate-stderr timeout 10 $cmd
            [ "$status" -ge 1 ] && [ "$status" -lt 124 ] || die "$cmd: exit $status"
            one_line_error "${cmd%% *}"
        done
    done
    [ ! -e m.icn ]
}

@test "msgpack bombs (a 5-byte header claiming 4 billion elements) are refused at once" {
    local bomb
    for bomb in '\xdd\xff\xff\xff\xff' '\xdf\xff\xff\xff\xff' '\xc6\xff\xff\xff\xff' '\xdb\xff\xff\xff\xff'; do
        printf "$bomb" >bomb.bin
        run --separate-stderr timeout 10 icn-load --info - <bomb.bin
        [ "$status" -eq 1 ] || die "icn-load --info, bomb $bomb: exit $status"
        one_line_error icn-load
        run --separate-stderr timeout 10 icn-classify train --out m.icn <bomb.bin
        [ "$status" -eq 1 ] || die "icn-classify train, bomb $bomb: exit $status"
        one_line_error icn-classify
        run --separate-stderr timeout 10 icn-eval error --model bomb.bin </dev/null
        [ "$status" -eq 1 ] || die "icn-eval --model bomb, $bomb: exit $status"
        one_line_error icn-eval
    done
    # a map nested deeper than 32 levels
    printf '\x81\xa1k%.0s' $(seq 40) >deep.bin
    printf '\xc0' >>deep.bin
    run --separate-stderr timeout 10 icn-load --info deep.bin
    expect_status 1
    one_line_error icn-load
}

@test "an empty stream holds no images; training on it is an error" {
    run --separate-stderr icn-load --info /dev/null
    expect_status 0
    [ "${lines[0]}" = "images: 0" ]
    run --separate-stderr icn-classify train --out m.icn </dev/null
    expect_status 1
    one_line_error icn-classify
    [ ! -e m.icn ]
}

@test "a model where a tensor stream belongs is refused, naming its kind" {
    need_mnist
    icn-load --split test --limit 64 --quiet >d.icn
    icn-classify train --arch c4 --steps 2 --batch 8 --quiet --data d.icn --out m.icn
    run --separate-stderr icn-load --info m.icn
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"'model'"* ]]
    # a stream followed by a model: the model frame is refused in place
    cat d.icn m.icn >mixed.icn
    run --separate-stderr icn-classify train --arch c4 --steps 1 --out m2.icn --data mixed.icn
    expect_status 1
    one_line_error icn-classify
    [[ "$stderr" == *"frame 1"* ]]
}

# ---- CIFAR-10 and SVHN, from small files in the real formats (tests/e2e/gen_datasets.c)

GEN=$ICN_BIN/../tests/gen_datasets

# gen cifar|svhn DIR N: N images per file (SVHN's extra gets 2N).
gen() {
    [ -x "$GEN" ] || skip "no $GEN (make builds it)"
    "$GEN" "$@"
}

@test "cifar10: binary files give 32x32x3 images in [-1, 1], labels 0..9, and the usual splits" {
    gen cifar c 12
    icn-load cifar10 --dir c --split all --quiet | icn-load --info - >all.txt
    grep -qx "images: 60" all.txt
    grep -qx "shape: 32x32x3" all.txt
    grep -qx "labels: yes" all.txt
    grep -qx "pixels: min -1 max 1 mean .*" all.txt
    [ "$(grep -c '^class [0-9]: 6$' all.txt)" -eq 10 ] # image g of the five files has label g % 10
    # train and val: the first and last 1/12 of the five files, as for MNIST; test: test_batch.bin
    icn-load cifar10 --dir c 2>err.txt | icn-load --info - >train.txt
    grep -q "wrote 55 images 32x32x3 (split train)" err.txt
    grep -qx "images: 55" train.txt
    icn-load cifar10 --dir c --split val --quiet | icn-load --info - >val.txt
    grep -qx "images: 5" val.txt
    grep -qx "class 9: 1" val.txt
    icn-load cifar10 --dir c --split test --quiet | icn-load --info - >test.txt
    grep -qx "images: 12" test.txt
    grep -qx "class 0: 2" test.txt
}

@test "svhn: MAT-files, compressed or not, y double or uint8; label 10 is the digit 0; train+extra" {
    gen svhn s 12
    icn-load svhn --dir s --split train+extra --quiet | icn-load --info - >both.txt
    grep -qx "images: 36" both.txt
    grep -qx "shape: 32x32x3" both.txt
    grep -qx "pixels: min -1 max 1 mean .*" both.txt
    [ "$(grep -c '^class [0-9]: ' both.txt)" -eq 10 ]
    ! grep -q '^class 10' both.txt
    grep -qx "class 0: 4" both.txt # images 0, 10 of train, 30, 40 of extra: stored as 10
    [ "$(awk '/^class /{s += $3} END {print s}' both.txt)" -eq 36 ]
    for split in "test 12" "extra 24" "all 12" "train 11" "val 1"; do
        set -- $split
        icn-load svhn --dir s --split "$1" --quiet | icn-load --info - >"$1.txt"
        grep -qx "images: $2" "$1.txt" || die "split $1: $(head -1 "$1.txt")"
    done
}

@test "cifar10 and svhn go through --classes, --relabel, --limit, --seed and --out as mnist does" {
    gen cifar c 12
    gen svhn s 12
    icn-load cifar10 --dir c --split all --classes 3,7 --relabel --quiet | icn-load --info - >info.txt
    grep -qx "images: 12" info.txt
    grep -qx "class 0: 6" info.txt
    grep -qx "class 1: 6" info.txt
    icn-load svhn --dir s --split train+extra --limit 10 --seed 3 --quiet >a.icn
    icn-load svhn --dir s --split train+extra --limit 10 --seed 3 --quiet --out b.icn
    icn-load svhn --dir s --split train+extra --limit 10 --seed 4 --quiet >c.icn
    cmp a.icn b.icn
    files_differ a.icn c.icn
    [ "$(count_images a.icn)" -eq 10 ]
}

@test "cifar10 and svhn: an absent file says where to get it; a truncated one is refused naming it" {
    mkdir empty
    run --separate-stderr icn-load cifar10 --dir empty
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"no data_batch_1.bin in empty"*"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"* ]]
    run --separate-stderr icn-load svhn --dir empty --split test
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"no test_32x32.mat in empty"*"http://ufldl.stanford.edu/housenumbers/test_32x32.mat"* ]]
    gen cifar c 4
    truncate -s -100 c/data_batch_3.bin
    run --separate-stderr icn-load cifar10 --dir c
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"c/data_batch_3.bin: truncated: record 4 has 2973 of its 3073 bytes"* ]]
    [ -z "$output" ]
    gen svhn s 4
    truncate -s -50 s/train_32x32.mat
    run --separate-stderr icn-load svhn --dir s --out never.icn
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"s/train_32x32.mat: truncated"* ]]
    [ ! -e never.icn ]
}

@test "a split a data set has not, and --dir where it means nothing, are usage errors" {
    for args in "mnist --split extra" "cifar10 --split train+extra" "mnist --dir ." "fashion --dir . --split test" \
        "cifar100" "svhn --split everything" "--images a --labels b --split extra" "--images a --labels b --dir ."; do
        run --separate-stderr icn-load $args
        [ "$status" -eq 2 ] || die "icn-load $args: exit $status"
        one_line_error icn-load
    done
}

@test "icn-classify train --augment on CIFAR-format data: runs, is reproducible, and augments" {
    gen cifar c 12
    icn-load cifar10 --dir c --split all --out train.icn --quiet
    local args=(--data train.icn --arch c8-c16 --steps 6 --batch 8 --lr 0.001 --seed 1 --quiet)
    icn-classify train "${args[@]}" --augment --out a1.icn
    icn-classify train "${args[@]}" --augment --out a2.icn
    icn-classify train "${args[@]}" --out plain.icn
    cmp a1.icn a2.icn
    files_differ a1.icn plain.icn
    icn-load cifar10 --dir c --split test --quiet | icn-eval error --model a1.icn >/dev/null
}

@test "icn-classify train --augment: a run killed after a checkpoint resumes to the unbroken run's model" {
    gen cifar c 12
    icn-load cifar10 --dir c --split all --out train.icn --quiet
    local args=(--data train.icn --arch c4 --steps 3000 --batch 4 --lr 0.001 --augment --threads 1
        --checkpoint-every 100)
    icn-classify train "${args[@]}" --quiet --checkpoint ref-ck.icn --out ref.icn
    icn-classify train "${args[@]}" --quiet --checkpoint ck.icn --out m.icn 3>&- &
    local pid=$! i
    for i in $(seq 400); do
        [ -e ck.icn ] && break
        sleep 0.02
    done
    kill -9 "$pid" 2>/dev/null || die "the run ended before it could be killed (make it longer)"
    wait "$pid" || true
    [ ! -e m.icn ]
    run --separate-stderr icn-classify train "${args[@]}" --checkpoint ck.icn --out m.icn --resume
    expect_status 0
    [[ "$stderr" =~ resuming\ from\ ck.icn\ at\ step\ ([0-9]+) ]] || die "no resume message: $stderr"
    echo "killed run resumed at step ${BASH_REMATCH[1]}" >&3
    [ "${BASH_REMATCH[1]}" -lt 3000 ]
    cmp m.icn ref.icn
}
