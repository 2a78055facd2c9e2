#!/usr/bin/env bash
# index_project.sh - `retro index build --project N`: the hash vectors projected
# onto N principal components fitted at the build (index/embed_pca.h). The
# projection is saved (pca-<sum>.bin), recorded as a `pca` embedder around the
# hash one, and used by searches and by later builds (no refit; another
# projection asked of them is refused); a passage
# with a fifth of its words dropped finds its source first; a damaged
# projection gets a one-line error naming it, from a search and from `index
# check`; `--retrain --project off` goes back to raw vectors and drops the file.
source "$(dirname "$0")/lib.sh"

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -50 | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb --project 64 --quiet > build.txt
grep -q "dim 64" build.txt || fail "not 64 dimensions: $(cat build.txt)"
pca=$(ls kb/index/pca-*.bin)
[ "$(echo "$pca" | wc -l)" = 1 ] || fail "no projection file: $(ls kb/index)"
kind=$(node -e 'const e = require("./kb/manifest.json").index.embedder; console.log(e.kind, e.dim, e.inner.kind, e.inner.dim, "pca-" + e.pca + ".bin")')
[ "$kind" = "pca 64 hash 256 $(basename "$pca")" ] || fail "manifest embedder: $kind"
ok "projected to 64 components: $kind"

# a passage of one address, a fifth of its words dropped, finds that address first
f=$(ls docs | sed -n 40p)
q=$(tr -s ' \n' '\n' < "docs/$f" | sed -n '300,359p' | awk 'NR % 5 { printf "%s ", $0 }')
"$RETRO" search kb "$q" -k 3 --mode vector --json > hits.json
top=$(head -1 hits.json | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).path)')
[ "$(basename "$top")" = "$f" ] || fail "first hit $top, not $f"
ok "a perturbed passage finds its address first through the projection"

# more documents: the recorded projection embeds them, no refit
ls "$SRC"/datasets/sotu/*.txt | sed -n "51,\$p" | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb --quiet > build2.txt
grep -q "added [1-9]" build2.txt || fail "second build: $(cat build2.txt)"
[ "$(ls kb/index/pca-*.bin)" = "$pca" ] || fail "the projection changed: $(ls kb/index)"
ok "a later build keeps the projection: $(head -1 build2.txt | sed 's/ in .*//')"
"$RETRO" index build kb --embedder hash --quiet > /dev/null || fail "--embedder hash refused on a projection of the hash embedder"
rc=0
"$RETRO" index build kb --project 32 --quiet > /dev/null 2> err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "already indexed with 64 dimensions, projected; use --retrain" err.txt || fail "another projection: rc $rc, $(cat err.txt)"
ok "another projection asked of a built index: $(cat err.txt)"

"$RETRO" index check kb > check.txt || fail "a healthy knowledge base fails: $(cat check.txt)"
cp "$pca" pca.good
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[100] ^= 0x04; open(sys.argv[2], "wb").write(b)' pca.good "$pca"
rc=0
"$RETRO" search kb "$q" -k 3 --mode vector > search.txt 2> err.txt || rc=$?
[ "$rc" != 0 ] || fail "a search through a damaged projection succeeds"
[ "$(wc -l < err.txt)" = 1 ] && grep -q "$(basename "$pca"): checksum mismatch" err.txt || fail "error: $(cat err.txt)"
rc=0
"$RETRO" index check kb > check.txt 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "$(basename "$pca")" check.txt || fail "index check passes a damaged projection: $(cat check.txt)"
ok "a damaged projection: $(cat err.txt)"
cp pca.good "$pca"

"$RETRO" index build kb --retrain --project off --quiet > build3.txt
grep -q "dim 256" build3.txt || fail "not raw vectors: $(cat build3.txt)"
[ -z "$(ls kb/index/pca-*.bin 2> /dev/null)" ] || fail "the projection file stays: $(ls kb/index)"
"$RETRO" search kb "$q" -k 1 --mode vector --json | grep -q "$f" || fail "raw search lost the passage"
ok "--retrain --project off: raw vectors again, the projection's file gone"
