#!/usr/bin/env bash
# `retro index build` and `retro search` through the real binary: results with
# sources, JSON fields, deleted documents, and bad input.
source "$(dirname "$0")/lib.sh"

"$RETRO" index add kb "$SRC/datasets/sotu" --quiet > /dev/null
expect_fail 1 "has no index yet; run 'retro index build" "$RETRO" search kb "oil"
"$RETRO" index build kb --quiet --json > build.json
[ "$(json_get created < build.json)" = true ] || fail "first build creates the index"
[ "$(json_get vectors < build.json)" = "$(json_get live_chunks < build.json)" ] || fail "every chunk indexed"

"$RETRO" search kb "the space program and landing on the moon" -k 3 --json > r.jsonl
[ "$(wc -l < r.jsonl)" = 3 ] || fail "3 results"
node -e '
  const rs = require("fs").readFileSync("r.jsonl", "utf8").trim().split("\n").map(JSON.parse);
  rs.forEach((r, i) => {
    for (const f of ["rank", "score", "chunk_id", "path", "byte_start", "byte_end", "text"])
      if (!(f in r)) throw new Error("missing " + f);
    if (r.rank !== i + 1) throw new Error("rank");
    if (i && r.score > rs[i - 1].score) throw new Error("not ranked");
    const text = require("fs").readFileSync(r.path);
    if (text.subarray(r.byte_start, r.byte_end).toString() !== r.text) throw new Error("span is not the text");
  });
  if (!/moon|space/i.test(rs[0].text)) throw new Error("top result is off topic: " + rs[0].text);
' || fail "search --json"
# through the 4-bit codes with every chunk re-ranked: the exact ranking
"$RETRO" search kb "the space program and landing on the moon" -k 3 --json --rerank 4096 > rr.jsonl
[ "$(grep -o '"chunk_id":[0-9]*' rr.jsonl)" = "$(grep -o '"chunk_id":[0-9]*' r.jsonl)" ] || fail "--rerank 4096 differs from exact search"
"$RETRO" search kb "the space program and landing on the moon" -k 3 --json --rerank 0 > r0.jsonl
cmp -s r0.jsonl r.jsonl || fail "--rerank 0 is not the exact search"
expect_fail 2 "rerank must be" "$RETRO" search kb "oil" --rerank 5000
ok "search: ranked results whose byte spans are the source text; --rerank"
"$RETRO" search kb "the space program" -k 2 --continuation > human.txt
grep -q "continuation" human.txt && grep -q "score" human.txt || fail "human output"

# a deleted document is never returned, before and after compaction
victim=$(node -e 'console.log(JSON.parse(require("fs").readFileSync("r.jsonl","utf8").split("\n")[0]).path)')
text=$(node -e 'console.log(JSON.parse(require("fs").readFileSync("r.jsonl","utf8").split("\n")[0]).text)')
"$RETRO" index rm kb "$victim" > /dev/null
"$RETRO" search kb "$text" -k 10 --json > after.jsonl
! grep -q "\"path\":\"$victim\"" after.jsonl || fail "deleted document returned"
"$RETRO" index build kb --compact --quiet --json > compact.json
[ "$(json_get removed < compact.json)" -gt 0 ] || fail "compaction removed nothing"
"$RETRO" search kb "$text" -k 10 --json > after2.jsonl
! grep -q "\"path\":\"$victim\"" after2.jsonl || fail "deleted document returned after compaction"
ok "deleted documents never returned (filtered, then compacted away)"

# bad input
expect_fail 1 "empty query" "$RETRO" search kb ""
expect_fail 2 "expected KB and QUERY" "$RETRO" search kb
long=$(for i in $(seq 40); do printf 'taxes and the budget deficit %d ' "$i"; done)
"$RETRO" search kb "$long" -k 2 > long.txt 2> long.err
grep -q "searched as [0-9]* chunks" long.err || fail "a long query says how it was searched"
cp -r kb kb2
shard=$(ls kb2/index/*.faiss | head -1)
cp "$shard" "$shard.good"
head -c 1000 "$shard.good" > "$shard"
expect_fail 1 "$(basename "$shard"): 1000 bytes where the manifest records" "$RETRO" search kb2 "oil"
# a flipped byte keeps the size: the first vector search reads the file and refuses it,
# a lexical search never reads it
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 0x10; open(sys.argv[2], "wb").write(b)' "$shard.good" "$shard"
expect_fail 1 "$(basename "$shard"): checksum mismatch" "$RETRO" search kb2 "oil" --mode vector
"$RETRO" search kb2 "oil" --mode lexical > /dev/null || fail "a lexical search does not need the vector shards"
ok "a damaged shard: refused by size at open, by checksum at the first vector search"
cp -r kb kb3
sed -i 's/"version": 1,/"version": 7,/' kb3/manifest.json
expect_fail 1 "newer than this retro supports" "$RETRO" search kb3 "oil"
expect_fail 1 "127.0.0.1:9" "$RETRO" index build kb --retrain --embedder http --embed-url http://127.0.0.1:9 --quiet
expect_fail 1 "indexed with embedder" "$RETRO" index build kb --embedder hash --dim 128 --quiet
"$RETRO" search kb "oil" -k 1 > /dev/null || fail "a refused rebuild must leave the index usable"
ok "bad input: empty query, long query, truncated index file, newer manifest, unreachable embedder, embedder change"

# a passage and the line of '=' under it, searched as two chunks: the line matches every table border
# and underline exactly, and must not outweigh the passage it underlines
mkdir -p rst
ls "$SRC"/datasets/sotu/*.txt | head -8 | xargs -I{} cp {} rst/
python3 -c '
open("rst/borders.rst", "w").write(("+" + "=" * 30 + "+" + "=" * 30 + "+\n| cell | cell |\n") * 200)
open("rst/underlines.rst", "w").write("".join("Section %d\n%s\n\nSome text about topic %d.\n\n" % (i, "=" * 70, i) for i in range(200)))'
"$RETRO" index add rstkb rst --quiet > /dev/null
"$RETRO" index build rstkb > /dev/null
src=$(ls rst/*.txt | head -3 | tail -1)
q="$(head -c 330 "$src")
$(printf '=%.0s' $(seq 70))"
"$RETRO" search rstkb "$q" -k 1 --mode vector > /dev/null 2> rst.err
grep -q "searched as [2-9] chunks" rst.err || fail "the underlined passage is not two query chunks: $(cat rst.err)"
for mode in vector hybrid; do
    "$RETRO" search rstkb "$q" -k 3 --mode $mode --json > rst.$mode.jsonl
    head -1 rst.$mode.jsonl | grep -q "\"path\":\"[^\"]*$(basename "$src")\"" || fail "$mode: the underline outweighs its passage: $(cut -c1-200 rst.$mode.jsonl)"
    ! grep -q "borders.rst\|underlines.rst" rst.$mode.jsonl || fail "$mode: table borders among the first 3: $(cut -c1-200 rst.$mode.jsonl)"
done
ok "a passage's underline weighs by its words (none) in a multi-chunk query: the passage first, no border in the top 3"
