#!/usr/bin/env bash
# run_search_scale.sh - search at a million chunks: the kernel's Documentation/ (the tree whose
# questions run_quality.sh writes) together with linux-source-6.1's fs/ and net/ C sources, about
# 1.15 M chunks with the default tokenizer. Prints, for each question set of the kernel tree
# (titles, headings, perturbed passages) and each mode, top-1/top-5 and the latency of one
# retro_search in process (median of RUNS runs of p50 and p99, each after 100 searches untimed, as in a
# process that has been searching a while), then the wall time and peak memory
# of whole `retro search` processes (open, search, print) in each mode.
#
#   bash tests/bench/run_search_scale.sh [BUILD_DIR]
#
#   RUNS=3   runs of each figure; the knowledge base stays in $RETRO_CACHE/scale (or build/scale) and
#            is brought up to date, not rebuilt
#   KB=DIR   measure knowledge base DIR as it is instead (made the same way elsewhere)
# Needs linux-source-6.1 (bash scripts/setup.sh --bench) and run_quality.sh's kernel questions
# (it writes them first when they are missing).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build/release}" && pwd)
runs=${RUNS:-3}
retro=$build/retro
bench=$build/tests/bench/bench_quality
ksrc=/usr/src/linux-source-6.1.tar.xz
work=${RETRO_CACHE:+$RETRO_CACHE/scale}
work=${work:-$src/build/scale}
quality=${RETRO_CACHE:+$RETRO_CACHE/quality}
quality=${quality:-$src/build/quality}
[ -x "$retro" ] && [ -x "$bench" ] || { echo "run_search_scale: build $build first" >&2; exit 1; }
[ -f "$ksrc" ] || { echo "run_search_scale: $ksrc missing (bash scripts/setup.sh --bench)" >&2; exit 1; }
if [ ! -f "$quality/kernel.q/titles.jsonl" ]; then
    bash "$src/tests/bench/run_quality.sh" "$build" > /dev/null
fi
mkdir -p "$work"
cd "$work"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%F)"
kb=${KB:-}
if [ -z "$kb" ]; then
    kb=$work/kb
    [ -d linux-source-6.1/fs ] || tar -xJf "$ksrc" linux-source-6.1/fs linux-source-6.1/net
    t0=$SECONDS
    "$retro" index add "$kb" "$quality/linux-source-6.1/Documentation" "$work/linux-source-6.1/fs" \
        "$work/linux-source-6.1/net" --quiet > /dev/null
    "$retro" index build "$kb" > build.txt
    echo "built in $((SECONDS - t0)) s:"
    grep -E 'lexical index|index ' build.txt | sed 's/^ */  /'
fi
echo "knowledge base: $("$retro" index info "$kb" --json | node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(j.chunks + " chunks, " + j.tokens + " tokens")')"
med() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
field() { node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(j[process.argv[1]])' "$1"; }
printf '\n| task | mode | top-1 | top-5 | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- | --- |\n'
for task in titles headings perturbed; do
    for mode in lexical vector hybrid; do
        : > r.jsonl
        for r in $(seq "$runs"); do "$bench" "$kb" "$quality/kernel.q/$task.jsonl" $mode 10 --warmup 100 >> r.jsonl; done
        p50=$(while read -r l; do echo "$l" | field p50_ms; done < r.jsonl | med)
        p99=$(while read -r l; do echo "$l" | field p99_ms; done < r.jsonl | med)
        printf '| %s | %s | %s | %s | %.2f | %.2f |\n' "$task" "$mode" "$(head -1 r.jsonl | field top1)" \
            "$(head -1 r.jsonl | field top5)" "$p50" "$p99"
    done
done
printf '\n| retro search process | wall ms (median) | peak resident MB |\n| --- | --- | --- |\n'
for mode in lexical vector hybrid; do
    : > p.txt
    : > m.txt
    for r in $(seq "$((runs * 3))"); do
        t0=$(date +%s%N)
        /usr/bin/time -f '%M' -a -o m.txt "$retro" search "$kb" "memory barriers and the CPU cache" --mode $mode -k 5 > /dev/null
        echo $(( ($(date +%s%N) - t0) / 1000000 )) >> p.txt
    done
    printf '| %s | %s | %s |\n' "$mode" "$(med < p.txt)" "$(( $(med < m.txt) / 1024 ))"
done
