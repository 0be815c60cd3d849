#!/usr/bin/env bats
# userdata.bats: a user's own data in (NumPy .npy files, a folder of PNG images per class) and
# out (.npy files), checked from the other side with Debian's python3-numpy; hostile .npy
# files and folders are refused with one line naming the file.

load helpers

setup() {
    cd "$BATS_TEST_TMPDIR"
    "$PYTHON" -c 'import numpy' 2>/dev/null || skip "python3-numpy not installed (scripts/deps.sh installs it)"
}

py() { "$PYTHON" -c "$@"; }

# PNG files written by hand with numpy and zlib (no imaging library): png(path, uint8 array).
PNG_PY='
import numpy as np, struct, zlib
def png(path, a):
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w = a.shape[:2]
    ct = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
'

@test "npy in: uint8 channels last, float32 and channels first give the same stream" {
    py '
import numpy as np
rng = np.random.default_rng(1)
x = rng.integers(0, 256, size=(7, 5, 4, 3), dtype=np.uint8)
np.save("x.npy", x)
np.save("xf.npy", x.astype(np.float32) / np.float32(127.5) - np.float32(1))
np.save("xc.npy", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
np.save("y.npy", np.array([0, 1, 2, 3, 4, 5, 6], dtype=np.int64))
np.save("y32.npy", np.arange(7, dtype=np.int32))
np.save("y8.npy", np.arange(7, dtype=np.uint8))
np.save("g.npy", x[:, :, :, 0])
'
    icn-load npy --images x.npy --labels y.npy --out a.icn 2>err.txt
    grep -q "wrote 7 images 5x4x3" err.txt
    icn-load npy --images xf.npy --labels y32.npy --quiet --out b.icn
    icn-load npy --images xc.npy --labels y8.npy --nchw --quiet --out c.icn
    cmp a.icn b.icn
    cmp a.icn c.icn
    icn-load --info a.icn >info.txt
    grep -qx "images: 7" info.txt
    grep -qx "shape: 5x4x3" info.txt
    grep -qx "class 6: 1" info.txt
    # (n, h, w): one channel
    icn-load npy --images g.npy --labels y.npy --quiet | icn-load --info - | grep -qx "shape: 5x4x1"
}

@test "npy round trip on real MNIST: --npy-out, numpy.load, and back to the same bytes" {
    need_mnist
    icn-load --split test --limit 300 --seed 2 --quiet --out t.icn
    icn-load stream t.icn --npy-out t 2>err.txt
    grep -q "wrote 300 images 28x28x1 .* to t-\*.npy" err.txt
    [ ! -e t-prov.npy ]
    py '
import numpy as np
x = np.load("t-images.npy"); y = np.load("t-labels.npy")
assert x.shape == (300, 28, 28, 1) and x.dtype == np.float32, (x.shape, x.dtype)
assert y.shape == (300,) and y.dtype == np.int32 and y.min() >= 0 and y.max() <= 9
assert x.min() == -1 and x.max() == 1
# the pixels are k/127.5 - 1 of whole bytes k
k = (x + 1) * 127.5
assert np.abs(k - np.round(k)).max() < 1e-4
np.save("u8.npy", np.round(k[..., 0]).astype(np.uint8))
np.save("y64.npy", y.astype(np.int64))
'
    icn-load npy --images t-images.npy --labels t-labels.npy --quiet --out back.icn
    cmp t.icn back.icn
    icn-load npy --images u8.npy --labels y64.npy --quiet --out back8.icn
    cmp t.icn back8.icn
}

@test "npy out: pseudo-negatives with their provenance, read by numpy.load" {
    need_mnist
    icn-load --limit 300 --quiet --out train.icn
    icn-classify train --data train.icn --arch c4 --steps 20 --batch 16 --quiet --out m.icn
    icn-synthesize --model m.icn --class 3 --count 6 --seed 5 --quiet 2>/dev/null | icn-load stream - --npy-out pn --quiet
    py '
import numpy as np
x = np.load("pn-images.npy"); y = np.load("pn-labels.npy"); p = np.load("pn-prov.npy")
assert x.shape == (6, 28, 28, 1) and np.isfinite(x).all() and np.abs(x).max() <= 1
assert (y == -4).all(), y                      # a pseudo-negative of class 3 is -(3+1)
assert p.shape == (6,) and p.dtype.names == ("generation", "steps", "logit", "reached", "producer")
assert (p["steps"] >= 1).all() and np.isfinite(p["logit"]).all() and set(p["reached"]) <= {0, 1}
'
    # the same records as icn-load --info reports
    icn-synthesize --model m.icn --class 3 --count 6 --seed 5 --quiet 2>/dev/null | icn-load --info - >info.txt
    grep -qx "pseudo-negative of class 3: 6" info.txt
    grep -qx "provenance: yes" info.txt
}

@test "npy out: a write that fails says so in one line and leaves no partial file" {
    py '
import numpy as np
np.save("x.npy", np.zeros((2, 3, 3), dtype=np.uint8)); np.save("y.npy", np.array([1, 0]))
'
    # the target is a non-empty directory: the rename fails (as root too)
    mkdir -p bad-images.npy/inside
    run --separate-stderr icn-load npy --images x.npy --labels y.npy --npy-out bad
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *bad-images.npy* ]] || die "error does not name the file: $stderr"
    [ -d bad-images.npy/inside ]
    [ -z "$(ls -A | grep '\.tmp')" ] || die "temporary file left behind: $(ls -A)"
    [ ! -e bad-labels.npy ]
    # a good write over earlier files replaces them whole
    icn-load npy --images x.npy --labels y.npy --npy-out o --quiet
    py 'import numpy as np; assert list(np.load("o-labels.npy")) == [1, 0]'
}

# `refuse FILE-ARGS... -- WORDS`: icn-load npy fails with exit 1 and one line naming the file and WORDS.
refuse_npy() {
    local images=$1 labels=$2 file=$3 words=$4
    shift 4
    run --separate-stderr icn-load npy --images "$images" --labels "$labels" --quiet "$@"
    expect_status 1
    one_line_error icn-load
    [[ "$stderr" == *"$file"* ]] || die "error does not name $file: $stderr"
    [[ "$stderr" == *"$words"* ]] || die "error does not say '$words': $stderr"
}

@test "npy in: malformed headers and hostile contents are refused with one line naming the file" {
    py '
import numpy as np
x = np.zeros((4, 3, 3), dtype=np.uint8)
np.save("x.npy", x); np.save("y.npy", np.array([0, 1, 2, 3]))
b = open("x.npy", "rb").read()
open("magic.npy", "wb").write(b"\x92" + b[1:])                    # wrong magic
open("short.npy", "wb").write(b[:-5])                             # a shape that does not fit the bytes
open("long.npy", "wb").write(b + b"\0")                           # bytes beyond the shape
open("hdrlen.npy", "wb").write(b[:8] + b"\xff\x7f" + b[10:])      # header length past the end
np.save("f64.npy", x.astype(np.float64))                          # unsupported dtype
np.save("fortran.npy", np.asfortranarray(np.arange(36, dtype=np.uint8).reshape(4, 3, 3)))
open("dup.npy", "wb").write(b.replace(b"\x27fortran_order\x27: False", b"\x27shape\x27: (4, 3, 3)    ", 1))
open("badver.npy", "wb").write(b[:6] + b"\x04\x00" + b[8:])
np.save("nan.npy", np.full((4, 3, 3), np.nan, dtype=np.float32))
np.save("big.npy", np.full((4, 3, 3), 1.5, dtype=np.float32))
np.save("y5.npy", np.array([0, 1, 2]))
np.save("yneg.npy", np.array([0, -1, 2, 3]))
np.save("y2d.npy", np.zeros((4, 1), dtype=np.int64))
np.save("yf.npy", np.zeros(4, dtype=np.float32))
'
    grep -q "'shape': (4, 3, 3)    , 'shape'" dup.npy
    refuse_npy magic.npy y.npy magic.npy "wrong magic"
    refuse_npy short.npy y.npy short.npy "needs 36 data bytes but the file has 31"
    refuse_npy long.npy y.npy long.npy "trailing bytes"
    refuse_npy hdrlen.npy y.npy hdrlen.npy "header declares"
    refuse_npy f64.npy y.npy f64.npy "unsupported dtype '<f8'"
    refuse_npy fortran.npy y.npy fortran.npy "Fortran order"
    refuse_npy dup.npy y.npy dup.npy "duplicate key 'shape'"
    refuse_npy badver.npy y.npy badver.npy "version 4.0"
    refuse_npy nan.npy y.npy nan.npy "finite and in [-1, 1]"
    refuse_npy big.npy y.npy big.npy "is 1.5"
    refuse_npy x.npy y5.npy y5.npy "3 labels for 4 images"
    refuse_npy x.npy yneg.npy yneg.npy "label 1 is -1"
    refuse_npy x.npy y2d.npy y2d.npy "expected shape (n,)"
    refuse_npy x.npy yf.npy yf.npy "dtype float32"
    refuse_npy y.npy y.npy y.npy "images of dtype int64"
    mkdir d.npy && mkfifo fifo.npy
    refuse_npy d.npy y.npy d.npy "not a regular file"
    refuse_npy fifo.npy y.npy fifo.npy "not a regular file"
    refuse_npy missing.npy y.npy missing.npy "No such file"
    # usage errors: exit 2
    run --separate-stderr icn-load npy --images x.npy
    expect_status 2
    run --separate-stderr icn-load --images x.npy --labels y.npy --nchw
    expect_status 2
}

@test "image folder in: classes in sorted order, the mapping printed, pixels as written" {
    py "$PNG_PY"'
import os
rng = np.random.default_rng(3)
for name, n in (("zebra", 2), ("Ant", 3), ("bee", 1)):      # byte order: Ant, bee, zebra
    os.makedirs("imgs/" + name)
    for i in range(n):
        png("imgs/%s/%02d.png" % (name, i), rng.integers(0, 256, size=(6, 5, 3)))
open("imgs/.DS_Store", "w").write("skipped")
'
    icn-load images imgs --classes-out classes.tsv --npy-out f 2>err.txt
    grep -qx "icn-load: class 0: Ant" err.txt
    grep -qx "icn-load: class 1: bee" err.txt
    grep -qx "icn-load: class 2: zebra" err.txt
    grep -q "wrote 6 images 6x5x3" err.txt
    printf '0\tAnt\n1\tbee\n2\tzebra\n' | cmp - classes.tsv
    py "$PNG_PY"'
import zlib, struct
def read(path):  # our own writer: one IDAT, filter 0
    b = open(path, "rb").read(); w, h, _, ct = struct.unpack(">IIBB", b[16:26])
    i = b.index(b"IDAT"); n = struct.unpack(">I", b[i-4:i])[0]
    raw = zlib.decompress(b[i+4:i+4+n]); c = 3 if ct == 2 else 1
    return np.frombuffer(raw, np.uint8).reshape(h, 1 + w*c)[:, 1:].reshape(h, w, c)
want = [read("imgs/%s/%02d.png" % (d, i)) for d, n in (("Ant", 3), ("bee", 1), ("zebra", 2)) for i in range(n)]
want = np.stack(want).astype(np.float32) / np.float32(127.5) - np.float32(1)
x = np.load("f-images.npy"); y = np.load("f-labels.npy")
assert x.shape == (6, 6, 5, 3), x.shape
assert np.array_equal(x, want)
assert list(y) == [0, 0, 0, 1, 2, 2], y
'
}

@test "image folder in: PNGs made by icn-eval grid of real MNIST digits (RGB)" {
    need_mnist
    mkdir -p g/one g/two
    icn-load --split test --classes 1 --limit 2 --quiet | icn-eval grid --out g/one/a.png --cols 2
    icn-load --split test --classes 1 --limit 2 --seed 9 --quiet | icn-eval grid --out g/one/b.png --cols 2
    icn-load --split test --classes 2 --limit 2 --quiet | icn-eval grid --out g/two/a.png --cols 2
    icn-load images g --quiet | icn-load --info - >info.txt
    grep -qx "images: 3" info.txt
    grep -qx "class 0: 2" info.txt
    grep -qx "class 1: 1" info.txt
    grep -qx "shape: 60x118x3" info.txt   # 2 digits of 28x28 zoomed twice, with gaps
}

@test "image folder in: hostile folders are refused with one line naming the file" {
    py "$PNG_PY"'
import os
for d in ("ok/a", "ok/b"): os.makedirs(d)
png("ok/a/1.png", np.zeros((4, 4), np.uint8)); png("ok/b/1.png", np.full((4, 4), 255, np.uint8))
'
    folder_refused() { # DIR NAMED WORDS
        run --separate-stderr icn-load images "$1" --quiet
        expect_status 1
        one_line_error icn-load
        [[ "$stderr" == *"$2"* ]] || die "error does not name $2: $stderr"
        [[ "$stderr" == *"$3"* ]] || die "error does not say '$3': $stderr"
    }
    icn-load images ok --quiet >/dev/null
    cp -r ok size && py "$PNG_PY"'png("size/b/2.png", np.zeros((5, 4), np.uint8))'
    folder_refused size size/b/2.png "one size"
    cp -r ok colour && py "$PNG_PY"'png("colour/b/2.png", np.zeros((4, 4, 3), np.uint8))'
    folder_refused colour colour/b/2.png "RGB, but"
    cp -r ok text && echo "not a picture" >text/a/readme.txt
    folder_refused text text/a/readme.txt "PNG signature"
    cp -r ok cut && head -c 40 ok/a/1.png >cut/a/2.png
    folder_refused cut cut/a/2.png "bad PNG"
    cp -r ok stray && echo x >stray/labels.csv
    folder_refused stray stray/labels.csv "not a directory"
    cp -r ok empty && mkdir empty/c
    folder_refused empty empty/c "no images"
    cp -r ok fifo && mkfifo fifo/a/2.png
    folder_refused fifo fifo/a/2.png "not a regular file"
    cp -r ok sub && mkdir sub/a/deeper
    folder_refused sub sub/a/deeper "not a regular file"
    mkdir none
    folder_refused none none "no class folders"
    folder_refused missing missing "No such file"
}
