# helpers.bash: shared by the Bats end-to-end tests (`load helpers`).
#
# The programs under test come from $ICN_BIN (exported by tests/run.sh), else the build tree.
# Each test runs in its own empty directory, $BATS_TEST_TMPDIR, removed by Bats afterwards.
# The tests read the REAL MNIST files from the data directory and are skipped, saying so,
# only when those files are absent.

bats_require_minimum_version 1.5.0

ICN_BIN=${ICN_BIN:-$BATS_TEST_DIRNAME/../../build/bin}
ICN_BIN=$(cd "$ICN_BIN" && pwd)
export ICN_BIN
PATH="$ICN_BIN:$PATH"
export PATH
# One thread each: the suite shares small machines with real runs, and single-threaded
# training is bit-reproducible, which the resume tests rely on.
export ICN_THREADS=${ICN_THREADS:-1}
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3 || true)

setup() {
    cd "$BATS_TEST_TMPDIR"
}

# N distinct free TCP ports on 127.0.0.1, space-separated (held together while chosen).
free_ports() {
    "$PYTHON" -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}

# The data directory, as icn_data_dir() finds it.
icn_data_dir() {
    if [ -n "${ICN_DATA:-}" ]; then echo "$ICN_DATA"
    elif [ -n "${XDG_CACHE_HOME:-}" ]; then echo "$XDG_CACHE_HOME/icn"
    else echo "$HOME/.cache/icn"; fi
}

have_mnist() {
    local d f
    d="$(icn_data_dir)/mnist"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [ -f "$d/$f" ] || [ -f "$d/$f.gz" ] || return 1
    done
}

# Skip the current test (or file, from setup_file) when MNIST has not been fetched.
need_mnist() {
    have_mnist || skip "MNIST not found in $(icn_data_dir)/mnist (run: icn-load --fetch mnist)"
}

# Fail with a message (Bats prints it with the failing test).
die() {
    echo "$*" >&2
    return 1
}

# Two files must differ (a bare `! cmp` would not fail a Bats test).
files_differ() {
    if cmp -s "$1" "$2"; then die "$1 and $2 are identical"; fi
}

# After `run --separate-stderr`: exactly one non-empty line on stderr, prefixed "PROG: ".
# (Helpers return explicitly: `set -e` is off inside a function called as `f || ...`.)
one_line_error() {
    local prog=$1
    [ -n "$stderr" ] || { die "nothing on stderr"; return 1; }
    [ "${#stderr_lines[@]}" -eq 1 ] ||
        { die "expected one line on stderr, got ${#stderr_lines[@]}, first: ${stderr_lines[0]}"; return 1; }
    [[ "$stderr" == "$prog: "* ]] || { die "stderr does not start with '$prog: ': ${stderr_lines[0]}"; return 1; }
}

# After `run`: the status shows a normal exit with that code, not a signal.
expect_status() {
    [ "$status" -eq "$1" ] || die "exit status $status, expected $1; stderr: ${stderr:-} output: ${output:0:400}"
}

# JSON checks with python3: `json_check FILE PYTHON_EXPR` evaluates the expression with d
# bound to the parsed document (and os imported, for values passed in the environment);
# it must be true.
json_check() {
    local file=$1 expr=$2
    [ -n "$PYTHON" ] || skip "python3 not found"
    "$PYTHON" -c '
import json, os, sys
d = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
if not ok:
    sys.exit("JSON check failed: " + sys.argv[2])
' "$file" "$expr"
}

# Every line of a JSON-lines file parses; prints the event names, one per line.
jsonl_events() {
    [ -n "$PYTHON" ] || skip "python3 not found"
    "$PYTHON" -c '
import json, sys
for i, line in enumerate(open(sys.argv[1]), 1):
    try:
        print(json.loads(line)["event"])
    except Exception as e:
        sys.exit("line %d does not parse as a JSON object with an event: %r (%s)" % (i, line, e))
' "$1"
}

# Flip one byte (XOR 0xff) at a given offset (default: the middle) of a file, in place.
# eval_error MODEL DATA N: run `icn-eval error` (status 0, its output in $lines), check its first
# line names N test images, and set WRONG and PCT from it.
eval_error() {
    run --separate-stderr icn-eval error --model "$1" --data "$2"
    expect_status 0
    [[ "${lines[0]}" =~ ^model\ .*:\ test\ error\ ([0-9.]+)%\ \(([0-9]+)\ of\ $3\ wrong\)$ ]] ||
        die "unexpected first line: ${lines[0]}"
    PCT=${BASH_REMATCH[1]} WRONG=${BASH_REMATCH[2]}
}

flip_byte() {
    local file=$1 size off byte
    size=$(stat -c %s "$file")
    off=${2:-$((size / 2))}
    byte=$(od -An -tu1 -j "$off" -N1 "$file" | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ 255)))" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none
}

# `png_decodes FILE [WIDTH HEIGHT]`: FILE is a PNG that decodes without any PNG library: the
# signature, every chunk's CRC, the IHDR size (when given), IEND last, and IDAT data that
# inflates to exactly the rows its header implies (8-bit, not interlaced).
png_decodes() {
    [ -n "$PYTHON" ] || skip "python3 not found"
    "$PYTHON" - "$@" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit("%s: no PNG signature" % sys.argv[1])
pos, idat, chunks = 8, b"", []
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 4:pos + 8 + n]
    if len(body) != n + 4 or zlib.crc32(body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
        sys.exit("%s: chunk %r at %d is truncated or fails its CRC" % (sys.argv[1], kind, pos))
    chunks.append(kind)
    if kind == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
if chunks[0] != b"IHDR" or chunks[-1] != b"IEND":
    sys.exit("%s: chunks %r" % (sys.argv[1], chunks))
w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
if len(sys.argv) > 3 and (w, h) != (int(sys.argv[2]), int(sys.argv[3])):
    sys.exit("%s: %dx%d, expected %sx%s" % (sys.argv[1], w, h, sys.argv[2], sys.argv[3]))
channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
if depth != 8 or interlace != 0:
    sys.exit("%s: bit depth %d, interlace %d" % (sys.argv[1], depth, interlace))
if len(zlib.decompress(idat)) != h * (1 + channels * w):
    sys.exit("%s: image data does not match %dx%d" % (sys.argv[1], w, h))
PY
}
