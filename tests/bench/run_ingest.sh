#!/usr/bin/env bash
# tests/bench/run_ingest.sh - end-to-end ingest throughput of `retro index add`
# (read, tokenize, chunk, compress, store) on the State of the Union corpus
# (all 233 addresses, from datasets/fetch.sh), one thread and two, with the
# default tokenizer and with GPT-2's. Prints the median of RUNS runs.
#
#   bash tests/bench/run_ingest.sh [path/to/retro] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
retro=${1:-$here/build/release/retro}
runs=${2:-5}
cache=$(bash "$here/datasets/fetch.sh")
corpus=$cache/corpora/sotu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
bytes=$(cat "$corpus"/*.txt | wc -c)
echo "corpus: $corpus ($(ls "$corpus" | wc -l) files, $bytes bytes); $runs runs each; $(nproc) cores"
printf '%-10s %-8s %12s %14s\n' tokenizer threads "MB/s" "M tokens/s"
for tok in default gpt2; do
    tokargs=()
    [ "$tok" = gpt2 ] && tokargs=(--gpt2 "$cache/gpt2")
    for threads in 1 2; do
        : > "$work/mbs"; : > "$work/tps"
        for r in $(seq "$runs"); do
            rm -rf "$work/kb"
            "$retro" index add "$work/kb" "$corpus" --quiet --json --threads "$threads" "${tokargs[@]}" > "$work/out.json"
            node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(j.mb_per_s)' "$work/out.json" >> "$work/mbs"
            node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(j.tokens_per_s/1e6)' "$work/out.json" >> "$work/tps"
        done
        printf '%-10s %-8s %12.1f %14.2f\n' "$tok" "$threads" "$(median < "$work/mbs")" "$(median < "$work/tps")"
    done
done
