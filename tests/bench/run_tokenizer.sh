#!/usr/bin/env bash
# run_tokenizer.sh - tokenizer encode throughput: retro (GPT-2 files and the
# default .rtok) against js-tiktoken's gpt2 encoding, one thread each, median
# of 5 runs over the same corpus, in one go. Prints the ratio.
#
#   bash tests/bench/run_tokenizer.sh [BUILD_DIR] [CORPUS_DIR]
#
# BUILD_DIR defaults to ./build (it must hold tests/bench/bench_tokenizer),
# CORPUS_DIR to datasets/sotu. Needs `bash datasets/fetch.sh` first.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
corpus=${2:-$src/datasets/sotu}
cache=${RETRO_CACHE:-$HOME/.cache/retro}
runs=${RUNS:-5}
bench=$build/tests/bench/bench_tokenizer
[ -x "$bench" ] || { echo "run_tokenizer: $bench not built" >&2; exit 1; }
if [ ! -f "$cache/gpt2/vocab.bpe" ] || [ ! -d "$cache/npm/node_modules/js-tiktoken" ]; then
    echo "run_tokenizer: GPT-2 files or js-tiktoken missing in $cache: run 'bash datasets/fetch.sh'" >&2
    exit 1
fi
echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "corpus:  $corpus"
out_c=$("$bench" --runs "$runs" --gpt2 "$cache/gpt2" --tokenizer "$src/datasets/tokenizer.rtok" "$corpus")
echo "$out_c" | grep -v '^RESULT'
out_js=$(node "$src/tests/bench/tokenizer_js.js" "$cache/npm/node_modules" "$corpus" "$runs")
echo "$out_js" | grep -v '^RESULT'
get() { sed -n "s/^RESULT name=$1 median_mbps=\([0-9.]*\) tokens=\([0-9]*\).*/\\$2/p"; }
c=$(echo "$out_c" | get gpt2 1)
ct=$(echo "$out_c" | get gpt2 2)
r=$(echo "$out_c" | get rtok 1)
js=$(echo "$out_js" | get js-tiktoken 1)
jst=$(echo "$out_js" | get js-tiktoken 2)
[ "$ct" = "$jst" ] || echo "WARNING: token counts differ (retro $ct, js-tiktoken $jst)" >&2
echo
echo "median encode throughput (MB/s, one thread):"
echo "  retro --gpt2:           $c"
echo "  retro default .rtok:    $r"
echo "  js-tiktoken gpt2:       $js"
awk -v c="$c" -v js="$js" 'BEGIN { printf "  ratio retro/js-tiktoken (gpt2): %.1fx\n", c / js }'
