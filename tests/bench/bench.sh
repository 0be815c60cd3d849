#!/bin/bash
# make bench: icn against Debian's python3-torch on the same cores, in the same run, every figure
# of issue 14, each as a ratio:
#   - the paper's MNIST net, training, BENCH_STEPS (300) steps of 64 on 2,000 MNIST images;
#   - synthesis, a batch of 100 x BENCH_SYNTH_STEPS (200) Adam steps on the input, 1 and 2 threads
#     (sample-steps per second);
#   - pre-activation ResNet-32, training, BENCH_RESNET_STEPS (30) steps of 128 on random 32x32x3;
#   - peak memory (max RSS) of each side, for each workload;
#   - snapshot delivery to 4 synthesizers (icn only: tests/bench/synth-scaling.sh);
#   - GFLOP/s reached against the FMA peak measured by tests/bench/bench_peak.
# Timing: WHOLE PROCESSES on both sides (start to exit, by /usr/bin/time: icn's data loading and
# setup, Python's interpreter start and `import torch`, all counted), each workload run as
# BENCH_PAIRS (3) pairs in turn, icn then PyTorch, so that both see the same load; the medians are
# compared. Nothing is niced. ICN_THREADS (default: all cores) threads for both sides.
# BENCH_ONLY=delivery runs the snapshot delivery figure alone (no PyTorch needed).
# BENCH_WALL=1 adds ICN's wall time against the baseline's with taskset (tests/bench/icn-wall.sh,
# about 10 more minutes; icn only: the baseline is icn's own trainer).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
bin=$BUILD/bin
pairs=${BENCH_PAIRS:-3}
steps=${BENCH_STEPS:-300}
synth_steps=${BENCH_SYNTH_STEPS:-200}
resnet_steps=${BENCH_RESNET_STEPS:-30}
threads=${ICN_THREADS:-$(nproc)}
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# delivery MODEL: snapshot delivery to 4 synthesizers, against its target.
delivery() {
    echo "== snapshot delivery to 4 synthesizers (icn only; target: median < 100 ms)"
    SCALE_SECONDS=${BENCH_DELIVERY_SECONDS:-10} ICN_BIN=$bin tests/bench/synth-scaling.sh "$1" 4 | tail -1 |
        tee "$tmp/delivery" | sed 's/^/  /'
    awk '{ for (i = 3; i < NF; i++) if ($i == "median") {
               if ($(i - 2) == "delivered") ms = $(i + 1) + 0; else if ($(i - 2) == "use") used = $(i + 1) + 0 } }
         END { printf "  median %.1f ms (target < 100 ms: %s); in use by synthesis after median %.1f ms\n",
                      ms, (ms < 100 ? "met" : "NOT met"), used }' "$tmp/delivery"
}
if [ "${BENCH_ONLY:-}" = delivery ]; then
    "$bin/icn-load" mnist --split train --limit 2000 --seed 1 --out "$tmp/train.icn" --quiet
    "$bin/icn-classify" train --data "$tmp/train.icn" --arch mnist --batch 64 --steps 20 --out "$tmp/m" --quiet
    delivery "$tmp/m"
    exit 0
fi
if ! $py -c 'import torch' 2>/dev/null; then
    echo "bench: the reference needs Debian's python3-torch: apt-get install -y python3-torch" >&2
    exit 1
fi

# timed NAME CMD...: run CMD as a whole process, append "seconds max-RSS-KiB" to $tmp/t.NAME.
timed() {
    local name=$1; shift
    /usr/bin/time -o "$tmp/time" -f '%e %M' "$@" >/dev/null 2>"$tmp/err" || {
        echo "bench: $name failed:" >&2; cat "$tmp/err" >&2; exit 1; }
    cat "$tmp/time" >>"$tmp/t.$name"
}

# report LABEL ICN TORCH WORK UNIT TARGET: medians of both sides' times, their ratio as speed
# (WORK / time in UNIT, when WORK is given), max RSS of each and their ratio, against the targets.
report() {
    local label=$1 icn=$2 torch=$3 work=$4 unit=$5
    awk -v label="$label" -v work="$work" -v unit="$unit" '
        function median(a, n,   i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        FILENAME == ARGV[1] { ni++; ti[ni] = $1; if ($2 > mi) mi = $2; runs_i = runs_i sprintf(" %.1f", $1) }
        FILENAME == ARGV[2] { nt++; tt[nt] = $1; if ($2 > mt) mt = $2; runs_t = runs_t sprintf(" %.1f", $1) }
        END {
            a = median(ti, ni); b = median(tt, nt); speed = b / a; mem = mi / mt
            printf "%s\n", label
            if (work > 0)
                printf "  icn     %8.1f s (runs:%s)  %10.1f %s  peak RSS %6.0f MiB\n  PyTorch %8.1f s (runs:%s)  %10.1f %s  peak RSS %6.0f MiB\n", \
                    a, runs_i, work / a, unit, mi / 1024, b, runs_t, work / b, unit, mt / 1024
            else
                printf "  icn     %8.1f s (runs:%s)  peak RSS %6.0f MiB\n  PyTorch %8.1f s (runs:%s)  peak RSS %6.0f MiB\n", \
                    a, runs_i, mi / 1024, b, runs_t, mt / 1024
            printf "  speed icn/PyTorch %.2fx (target >= 1.5: %s); memory icn/PyTorch %.2f (target <= 0.5: %s)\n", \
                speed, (speed >= 1.5 ? "met" : "NOT met"), mem, (mem <= 0.5 ? "met" : "NOT met")
            printf "%s %.6g %.6g\n", label, a, (work > 0 ? work / a : 0) > "/dev/stderr"
        }' "$icn" "$torch" 2>>"$tmp/summary"
}

# The processor's family and model, and the kernels OpenBLAS chose: the ratios depend on both
# (a Zen 5, family 0x1a, runs AVX-512 at full width; a Zen 4, 0x19, at half; OpenBLAS 0.3.21 picks
# AVX-512 kernels unless OPENBLAS_CORETYPE holds it to others). docs/RESULTS.md has both machines.
cpuid=$(awk -F': *' '/^cpu family/ && !f { f = $2 } /^model[[:space:]]*:/ && !m { m = $2 }
                    END { if (f != "") printf "family 0x%x model 0x%x", f, m }' /proc/cpuinfo)
blas_core=$($py -c 'import ctypes; l = ctypes.CDLL("libopenblas.so.0"); l.openblas_get_corename.restype = ctypes.c_char_p
print(l.openblas_get_corename().decode())' 2>/dev/null || echo unknown)
printf 'machine: %s (%s), %s threads for each side; OpenBLAS kernels: %s%s\n' \
    "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "${cpuid:-family unknown}" "$threads" "$blas_core" \
    "$(env | grep '^OPENBLAS_' | sort | sed 's/^/, /' | tr -d '\n')"
printf 'PyTorch %s (Debian python3-torch), icn convolutions: %s\n' "$($py -c 'import torch; print(torch.__version__)')" \
    "${ICN_CONV:-fast} (ICN_CONV)"
printf 'timing: whole processes on both sides (start to exit, /usr/bin/time), %d pairs per workload run in turn\n' "$pairs"
printf '        (icn, PyTorch, icn, ...): medians compared; load average at start: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

"$bin/icn-load" mnist --split train --limit 2000 --seed 1 --out "$tmp/train.icn" --quiet
"$BUILD/tests/bench_data" 2000 32 32 3 10 1 >"$tmp/cifar-shaped.icn"
ICN_THREADS=$threads "$bin/icn-classify" train --data "$tmp/train.icn" --arch mnist --batch 64 --steps 20 \
    --out "$tmp/mnist.icn" --quiet # the model synthesis samples from

for p in $(seq 1 "$pairs"); do
    timed mnist.icn env ICN_THREADS="$threads" "$bin/icn-classify" train --data "$tmp/train.icn" --arch mnist \
        --batch 64 --steps "$steps" --out "$tmp/m" --quiet
    timed mnist.torch $py tests/bench/torch_bench.py train mnist "$steps" "$threads" 64 28 28 1
    for t in 1 2; do
        timed synth$t.icn "$bin/icn-synthesize" --model "$tmp/mnist.icn" --class 3 --count 100 --batch 100 \
            --max-steps "$synth_steps" --stop 3 --threads "$t" --out "$tmp/s.icn" --quiet
        timed synth$t.torch $py tests/bench/torch_bench.py synth mnist "$synth_steps" "$t" 100 28 28 1
    done
    timed resnet.icn env ICN_THREADS="$threads" "$bin/icn-classify" train --data "$tmp/cifar-shaped.icn" \
        --arch resnet32 --batch 128 --steps "$resnet_steps" --out "$tmp/r" --quiet
    timed resnet.torch $py tests/bench/torch_bench.py train resnet32 "$resnet_steps" "$threads" 128 32 32 3
done

echo
report "== MNIST net training, $steps steps of 64" "$tmp/t.mnist.icn" "$tmp/t.mnist.torch" $((steps * 64)) img/s
report "== synthesis, 1 thread: batch 100 x $synth_steps Adam steps on the input (sample-steps/s)" \
    "$tmp/t.synth1.icn" "$tmp/t.synth1.torch" $((100 * synth_steps)) sample-steps/s
report "== synthesis, 2 threads: batch 100 x $synth_steps Adam steps on the input (sample-steps/s)" \
    "$tmp/t.synth2.icn" "$tmp/t.synth2.torch" $((100 * synth_steps)) sample-steps/s
report "== ResNet-32 training, $resnet_steps steps of 128" "$tmp/t.resnet.icn" "$tmp/t.resnet.torch" \
    $((resnet_steps * 128)) img/s

delivery "$tmp/m"

echo "== GFLOP/s reached against this machine's FMA peak (bench_peak: per second of CPU time, so load-proof)"
"$BUILD/tests/bench_peak" resnet32 32 32 3 >"$tmp/peak"
"$BUILD/tests/bench_peak" mnist 28 28 1 | grep flop >>"$tmp/peak"
sed 's/^/  /' "$tmp/peak"
awk -v threads="$threads" '
    FILENAME == ARGV[1] && $1 == "fma_peak" { peak[$3] = $5; peak2[$3] = $7 }
    FILENAME == ARGV[1] && $1 == "train_flop_per_image" { flop[$2] = $3 }
    FILENAME == ARGV[2] && /MNIST net training/ { rate["mnist"] = $NF }
    FILENAME == ARGV[2] && /ResNet-32 training/ { rate["resnet32"] = $NF }
    END {
        t = threads > 2 ? 2 : threads
        for (a in rate) {
            g = rate[a] * flop[a] / 1e9
            printf "  %s training (whole process): %.1f GFLOP/s = %.0f%% of the %d-thread AVX-512 peak (%.0f), %.0f%% of the AVX2 peak (%.0f)\n", \
                a, g, 100 * g / peak[t], t, peak[t], 100 * g / peak2[t], peak2[t]
        }
    }' "$tmp/peak" <(sed 's/^== //' "$tmp/summary")
echo "note: the machine may be shared; ratios are robust to that (both sides ran in turn), absolute figures are not"
if [ "${BENCH_WALL:-0}" = 1 ]; then
    echo "== ICN's wall time against the baseline's, 2,000 images, default protocol (tests/bench/icn-wall.sh)"
    ICN_BIN=$bin tests/bench/icn-wall.sh | sed 's/^/  /'
fi
