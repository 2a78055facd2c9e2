#!/usr/bin/env bash
# run_billion.sh - the billion-token knowledge base (docs/benchmarks.md, "A billion tokens"):
# linux-source-6.1 whole and linux-source-6.12's Documentation, fs and net (1.05 B tokens,
# 16.5 M chunks with the default tokenizer), added and built with the defaults, then measured:
# `retro search` processes in each mode, recall and latency against exact search (bench_ann),
# and 1% more documents (linux-source-6.12/kernel) added and built afterwards.
#
#   bash tests/bench/run_billion.sh BUILD_DIR [WORK_DIR]     # WORK_DIR default /tmp/billion
#
# Needs datasets/kernel.sh's trees, about 16 GB of disk in WORK_DIR and an hour on 2 cores.
# STEPS (default "add build search ann more") picks steps, e.g. STEPS="search ann" on a built base.
set -euo pipefail
build=${1:?usage: run_billion.sh BUILD_DIR [WORK_DIR]}
work=${2:-/tmp/billion}
retro=$(cd "$build" && pwd)/retro
bench_ann=$(cd "$build" && pwd)/tests/bench/bench_ann
k=$(bash "$(dirname "$0")/../../datasets/kernel.sh")
steps=${STEPS:-add build search ann more}
mkdir -p "$work"
cd "$work"
kb=$work/kb
timed() {   # LABEL COMMAND...: wall seconds and peak resident memory on stderr
    local label=$1
    shift
    /usr/bin/time -f "$label: %e s, peak %M KB" "$@"
}
has() { [[ " $steps " == *" $1 "* ]]; }

if has add; then
    rm -rf "$kb"
    timed "add" "$retro" index add "$kb" "$k/linux-source-6.1" "$k/linux-source-6.12/Documentation" \
        "$k/linux-source-6.12/fs" "$k/linux-source-6.12/net" --quiet > add.log
    "$retro" index info "$kb" | sed -n '3,7p'
fi
if has build; then
    timed "build" "$retro" index build "$kb" --quiet
    du -sh "$kb/store" "$kb/index"
fi
if has search; then
    for mode in vector lexical hybrid; do
        for i in 1 2 3 4 5; do
            timed "search --mode $mode" "$retro" search "$kb" "memory barriers and the CPU cache" -k 5 --mode $mode > /dev/null
        done
    done
fi
if has ann; then
    "$bench_ann" "$kb" 1000
fi
if has more; then
    timed "add 1%" "$retro" index add "$kb" "$k/linux-source-6.12/kernel" --quiet
    timed "build 1%" "$retro" index build "$kb"
fi
