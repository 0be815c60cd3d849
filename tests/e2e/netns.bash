# netns.bash: three "machines" as network namespaces, for the multi-host tests (`load netns`).
#
#   head (pool, trainer) ── bridge br0, 10.213.0.1/24
#     ├── veth ── worker 1 (eth0, 10.213.0.2/24)
#     ├── veth ── worker 2 (eth0, 10.213.0.3/24)
#     └── ...     worker N (eth0, 10.213.0.N+1/24; `netns_up N`, 2 by default)
#
# 10.213.0.0/24 exists only inside these namespaces: none of them has a route out, and the
# namespaces are not linked to the host's, so test traffic never leaves them. Each namespace
# has its own ports, so the fixed ports below cannot collide with anything else on the host.
# Names carry this shell's PID and a random suffix ("icn-PID-RAND-head", NS_TAG is
# "icn-PID-RAND"; a caller's own namespaces named "$NS_TAG-ref" are swept alike): other runs of the
# same tests may be going on at the same time. netns_down kills every process left in the
# namespaces and deletes them; netns_up first removes namespaces left by runs whose process
# is gone (a run killed with SIGKILL never reaches its teardown).

NS_NET=10.213.0
HEAD_ADDR=$NS_NET.1
W1_ADDR=$NS_NET.2
W2_ADDR=$NS_NET.3
W3_ADDR=$NS_NET.4
# ports inside the namespaces (the defaults of icn-pool / icn-classify / icn-synthesize)
SNAP_PORT=5560 PUSH_PORT=5561 REQ_PORT=5562

# Skip (from setup or setup_file) unless this process may create network namespaces.
need_netns() {
    [ "$(id -u)" -eq 0 ] || skip "network namespaces need root (ip netns)"
    command -v ip >/dev/null || skip "ip (iproute2) not found"
    local probe="icn-$$-probe$RANDOM"
    ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
    ip netns del "$probe"
}

# Kill every process in namespace $1, then delete it.
netns_remove() {
    local ns=$1 pids
    pids=$(ip netns pids "$ns" 2>/dev/null) || true
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
        sleep 0.1
    done
    ip netns del "$ns" 2>/dev/null || true
}

# Namespaces of runs whose process no longer exists.
netns_sweep_stale() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        [[ $ns =~ ^icn-([0-9]+)-[0-9]+-(head|w[0-9]|ref)$ ]] || continue
        pid=${BASH_REMATCH[1]}
        [ -d "/proc/$pid" ] || netns_remove "$ns"
    done
}

# netns_up [N]: create the head's namespace and N workers' (2 by default, at most 9); sets
# NS_TAG, NS_HEAD and NS_W1 ... NS_WN.
netns_up() {
    netns_sweep_stale
    local n=${1:-2} w i
    [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "netns_up: $n workers (1 to 9)"
    NS_TAG="icn-$$-$RANDOM"
    NS_HEAD=$NS_TAG-head
    # recorded first, so that netns_down removes whatever part of this was made
    NS_ALL=("$NS_HEAD")
    for i in $(seq 1 "$n"); do
        printf -v "NS_W$i" '%s' "$NS_TAG-w$i"
        NS_ALL+=("$NS_TAG-w$i")
    done
    for w in "${NS_ALL[@]}"; do
        ip netns add "$w" || return 1
        ip -n "$w" link set lo up || return 1
    done
    ip -n "$NS_HEAD" link add br0 type bridge || return 1
    ip -n "$NS_HEAD" addr add "$HEAD_ADDR/24" dev br0 || return 1
    ip -n "$NS_HEAD" link set br0 up || return 1
    i=1
    for w in "${NS_ALL[@]:1}"; do
        ip -n "$NS_HEAD" link add "w$i" type veth peer name eth0 netns "$w" || return 1
        ip -n "$NS_HEAD" link set "w$i" master br0 up || return 1
        ip -n "$w" addr add "$NS_NET.$((i + 1))/24" dev eth0 || return 1
        ip -n "$w" link set eth0 up || return 1
        i=$((i + 1))
    done
    # the links come up asynchronously: wait until both ends are up and the bridge forwards
    for i in $(seq 1 "$n"); do netns_wait_link "$i" || return 1; done
}

# netns_wait_link I: worker I's eth0 is up and its bridge port forwards (5 s at most).
netns_wait_link() {
    local w=NS_W$1
    for _ in $(seq 1 50); do
        ip -n "${!w}" -o link show eth0 | grep -q 'state UP' &&
            bridge -n "$NS_HEAD" link show dev "w$1" | grep -q 'state forwarding' && return 0
        sleep 0.1
    done
    die "worker $1's link did not come up"
}

netns_down() {
    local ns
    for ns in "${NS_ALL[@]}"; do netns_remove "$ns"; done
    NS_ALL=()
}

# in_ns NAMESPACE COMMAND...: run a command inside a namespace. (For a background process, call
# `ip netns exec NS PROG &` directly: it execs PROG, so $! is the program itself.)
in_ns() {
    local ns=$1; shift
    ip netns exec "$ns" "$@"
}

# VmRSS of a process in kB.
rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
