#!/usr/bin/env bash
# run_train.sh - training throughput of retro against the PyTorch
# implementation of the same architecture (tests/tools/retro_ref.py), same
# configuration, same threads, in one go; the RETRO model and the baseline,
# on 1 and 2 threads. Each line is one JSON result (median step time of
# STEPS steps after 2 warm-up steps); the summary gives the ratios.
#
#   bash tests/bench/run_train.sh [BUILD_DIR]     (STEPS=10 RUNS=3 by default)
#
# Needs Debian's python3-torch (a test-only reference: apt-get install
# python3-torch). The configuration is the issue's: vocabulary 4096, width 256,
# 6 layers, 4 heads, context 512, batch 4, CCA at layers 3 and 6, k = 2
# neighbours of 128 tokens, encoder 2 layers of width 128.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build/release}
steps=${STEPS:-10}
runs=${RUNS:-3}
bench=$build/tests/bench/bench_train
[ -x "$bench" ] || { echo "run_train: $bench not built" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "run_train: python3-torch missing" >&2; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "torch:   $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for run in $(seq "$runs"); do
    for threads in 1 2; do
        for mode in "" --baseline; do
            "$bench" --threads "$threads" --steps "$steps" $mode | tee -a "$out"
            /usr/bin/python3 "$src/tests/tools/retro_ref.py" bench --threads "$threads" --steps "$steps" $mode \
                | tee -a "$out"
        done
    done
done
# the machine's sgemm peak, measured in the same run: the best of bench_ops'
# training-step GEMM shapes, median of 7 timings each
"$build/tests/bench/bench_ops" 7 1 > "$out.ops"
cat "$out.ops"
sed -n \
    's/.*peak (best shape): \([0-9.]*\) GFLOP\/s on 1 thread, \([0-9.]*\) GFLOP\/s on 2 threads.*/{"threads":1,"sgemm_gflops":\1}\n{"threads":2,"sgemm_gflops":\2}/p' "$out.ops" >> "$out"
rm -f "$out.ops"
/usr/bin/python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(impl, threads, baseline, key):
    v = [r[key] for r in rows if r.get("impl") == impl and r.get("threads") == threads
         and bool(r.get("baseline", False)) == baseline and key in r]
    return statistics.median(v) if v else float("nan")
peak = {r["threads"]: r["sgemm_gflops"] for r in rows if "sgemm_gflops" in r}
print("\nmedians over %d runs (tokens/s):" % max(1, len([r for r in rows if r.get("impl") == "retro"]) // 4))
print("%-9s %-8s %10s %10s %7s %10s %12s" % ("model", "threads", "retro", "torch", "ratio", "GFLOP/s", "of sgemm peak"))
for baseline in (False, True):
    for t in (1, 2):
        a, b = med("retro", t, baseline, "tokens_per_s"), med("torch", t, baseline, "tokens_per_s")
        g = med("retro", t, baseline, "gflops")
        p = peak.get(t)
        print("%-9s %-8d %10.0f %10.0f %6.2fx %10.1f %12s" % ("baseline" if baseline else "RETRO", t, a, b, a / b, g,
              "%.0f%%" % (100 * g / p) if p else "-"))
for baseline in (False, True):
    s = med("retro", 2, baseline, "tokens_per_s") / med("retro", 1, baseline, "tokens_per_s")
    print("%s: 1 -> 2 threads: %.2fx" % ("baseline" if baseline else "RETRO", s))
r = [x for x in rows if x.get("impl") == "retro" and not x["baseline"]][0]
print("RETRO memory: peak RSS %.0f MB, estimate %.0f MB (activations %.0f MB); model %.1f GFLOP per step"
      % (r["peak_rss_mb"], r["estimate_mb"], r["activations_mb"], r["model_gflop_per_step"]))
EOF
