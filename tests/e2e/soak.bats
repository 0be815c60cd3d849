#!/usr/bin/env bats
# The chaos soak, short: tests/soak/chaos.sh for 3 minutes with seed 180, whose schedule holds
# six of the seven kinds of fault (the pool and the trainer killed with SIGKILL and restarted, a
# synthesizer killed and one stopped for 30 s, a worker's link down for 10 s, a connection
# flood; the subscribe loop has its own test in netns.bats), and a worker's link down when the
# trainer ends, so that it misses the trainer's stop. The 20-minute soak is
#   flock /tmp/icn-e2e.lock tests/soak/chaos.sh --out /tmp/chaos-20m 20m 1
# (docs/GUIDE.md, "Chaos soak").

load helpers
load netns

setup() {
    cd "$BATS_TEST_TMPDIR"
    need_mnist
    need_netns
}

teardown() { # chaos.sh removes its namespaces itself, also when it fails; these are leftovers
    netns_sweep_stale
}

@test "chaos soak, 3 minutes (seed 180): nothing acknowledged is lost or stored twice, the run finishes, every worker ends by itself" {
    # A run of 2026-12-07 at 42d1928 found one image of producer 11 stored twice (acknowledged
    # 4,621, stored 4,621, distinct 4,620; the producer stopped from 56 to 86 s): the worker took
    # a generation a second time (a snapshot request's answer crossed a newer publication) and
    # made that generation's samples again from the same seeds. Since then a stale answer is
    # ignored and a generation taken again draws from a seed of its own (test_inbox, test_online).
    # the trainer must outlast the last fault (151 s): a round took 0.13 to 0.5 s on the 2-core
    # Zen 4, as loaded by other work (720 rounds once ended at 92 s, before three of the faults),
    # and 0.1 s on a quiet Zen 3 (family 0x19 model 0x01: 1,500 rounds ended at 149 s, before the
    # synth-kill at 151 s): 3,000 rounds
    run --separate-stderr "$BATS_TEST_DIRNAME/../soak/chaos.sh" --out soak --rounds 3000 3m 180
    echo "$output"
    echo "$stderr" | tail -20
    [ -s soak/table.md ] || die "the soak ended (exit $status) before its checks"
    sed 's/^/# /' soak/table.md >&3
    [ "$status" -eq 0 ] || die "the soak found violations (exit $status): $(grep -A20 FAILED soak/table.md)"
    grep -q 'link down for 10 s at the trainer' soak/events.log
    # the schedule's six faults were all injected while the trainer ran, and the end's fault
    json_check soak/table.json 'sum(d["faults"].values()) == 7 and d["faults"]["link-down-at-end"] == 1 and d["passed"]'
}
