#!/usr/bin/env bats
# pipelines/slurm/ against a real single-node Slurm (Debian's slurm-wlm and munge), started by
# this file in a temporary directory (tests/e2e/slurm.bash) with the machine's CPUs (2),
# and stopped, with the directory removed, in teardown_file, also when a test fails.

load helpers
load slurm

setup_file() {
    need_slurm
    need_mnist
    # a short path: munge's socket name must fit in a sockaddr_un
    SLURM_DIR=$(mktemp -d /tmp/icn-slurm.XXXXXX)
    export SLURM_DIR
    slurm_up "$SLURM_DIR"
}

teardown_file() {
    [ -n "${SLURM_DIR:-}" ] || return 0
    slurm_down "$SLURM_DIR"
    rm -rf "$SLURM_DIR"
}

setup() {
    cd "$BATS_TEST_TMPDIR"
    PATH=$PATH:/usr/sbin
}

@test "slurm: an introspective job, the head in the batch script and a synthesizer in each of 2 srun tasks" {
    # the workers reach the head on loopback (the host's name may resolve to another address)
    export ICN_HOME=$BATS_TEST_DIRNAME/../.. ICN_HEAD_HOST=127.0.0.1
    export ICN_SYNTH_FLAGS="--batch 2 --max-steps 20 --max-per-gen 1"
    # each task's synthesizer gives at most 1 of the 2 pseudo-negatives a class needs per round
    run sbatch --wait --ntasks=2 --output="$PWD/job.out" --chdir="$PWD" "$ICN_HOME/pipelines/slurm/introspective.sbatch" \
        --train-images 300 -- --arch c8-c16 --batch 32 --pn-batch 16 --initial-steps 20 \
        --round-steps 15 --per-class 2 --rounds 3 --wait-timeout 120 --quiet
    cat job.out
    expect_status 0
    [[ "$output" =~ Submitted\ batch\ job\ ([0-9]+) ]] || die "no job id in: $output"
    job=${BASH_REMATCH[1]}
    # the run directory by default: runs/slurm-JOBID under the submit directory
    ln -s "runs/slurm-$job" run
    scontrol show job "$job" >job.txt
    grep -q 'JobState=COMPLETED' job.txt
    grep -q 'ExitCode=0:0' job.txt
    grep -q 'NumTasks=2' job.txt
    grep -q 'head exited 0' job.out
    # one synthesizer per task, producers 101 and 201, each 1 per class per generation
    icn-pool stats --store run/pool.store --json >stats.json
    cat stats.json
    json_check stats.json 'd["per_producer"] == {"101": 30, "201": 30}'
    json_check stats.json 'd["per_generation"] == {"1": 20, "2": 20, "3": 20}'
    # CURVE on: the head's key and one per task, shared through the run directory
    [ -f run/keys/head.key ] && [ -f run/keys/head.pub ]
    [ "$(ls run/keys/allow/*.pub | wc -l)" -eq 2 ] || die "allowed keys: $(ls run/keys/allow)"
    if grep -qE 'refused (CURVE key|a peer|[0-9]+ more attempts)' run/pool.log; then die "the pool refused a peer: $(grep refused run/pool.log)"; fi
    [ "$(grep -c '"event":"round"' run/icn.jsonl)" -eq 3 ]
    [ -s run/icn.model ]
    icn-load mnist --split test --limit 200 --seed 1 --out test.icn --quiet
    eval_error run/icn.model test.icn 200
}
