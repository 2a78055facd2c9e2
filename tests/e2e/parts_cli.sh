#!/usr/bin/env bash
# parts_cli.sh - a knowledge base of partitions in one process (any build, with or without Open MPI):
# `retro index add --partitions 3`, build, search; `retro serve --read-only` answers /v1/search over
# every partition with what `retro search` prints, and the calls that do not read partitions yet
# (documents, index info) say so in one line; a rerun with another count is refused.
source "$(dirname "$0")/lib.sh"
mkdir -p docs && cp "$SRC"/datasets/sotu/19[6-9]*.txt docs/
"$RETRO" index add kb docs --partitions 3 --quiet > add.txt
grep -q " files: .* new" add.txt || { cat add.txt; fail "add"; }
[ -d kb/part-0002 ] || fail "no third partition"
"$RETRO" index build kb --quiet > /dev/null
q="the cost of health care for older americans"
"$RETRO" search kb "$q" -k 3 --json > cli.json
[ "$(wc -l < cli.json)" = 3 ] || fail "search: 3 results expected"
# every partition searched: the files go to partitions by their paths' hash (here under a temporary
# directory of a random name), so a query's best 3 may all be one partition's; its best 4,096 are not
"$RETRO" search kb "$q" -k 4096 --json > many.json
node -e 'const ids = require("fs").readFileSync("many.json", "utf8").trim().split("\n").map(l => JSON.parse(l).chunk_id);
         const parts = new Set(ids.map(id => Math.floor(id / 2 ** 40)));
         if (parts.size !== 3) throw new Error("hits from partitions " + [...parts])' \
    || fail "search: every partition searched"
ok "index add --partitions 3, build and search"

serve_start --kb kb --read-only
curl -s "$url/v1/search" -d "{\"query\": \"$q\", \"k\": 3}" > http.json
node -e 'const fs = require("fs");
  const cli = fs.readFileSync("cli.json", "utf8").trim().split("\n").map(l => JSON.parse(l).chunk_id);
  const http = JSON.parse(fs.readFileSync("http.json")).data.map(h => h.chunk_id);
  if (JSON.stringify(cli) !== JSON.stringify(http)) throw new Error(`${cli} against ${http}`);' \
    || fail "serve: /v1/search is not retro search's ranking"
curl -s "$url/v1/documents" > docs.json
grep -q "3 partitions" docs.json || { cat docs.json; fail "serve: /v1/documents does not say why"; }
serve_stop
ok "serve --read-only searches every partition; documents say they are not read across partitions yet"

# a model's neighbours over partitions are the plain knowledge base's: evaluation gives its figures
"$RETRO" index add plain docs --quiet > /dev/null && "$RETRO" index build plain --quiet > /dev/null
tiny_model plain model
"$RETRO" eval --model model --kb plain --split val --json > plain.json
"$RETRO" eval --model model --kb kb --split val --json > parts.json
node -e 'const fs = require("fs");
  const a = JSON.parse(fs.readFileSync("plain.json")), b = JSON.parse(fs.readFileSync("parts.json"));
  if (a.documents !== b.documents || a.chunks !== b.chunks) throw new Error("counts");
  a.runs.forEach((r, i) => {
    if (Math.abs(r.bpb - b.runs[i].bpb) > 1e-6 * r.bpb) throw new Error(`run ${i}: ${r.bpb} against ${b.runs[i].bpb}`);
    r.leakage.forEach((l, k) => { if (l.chunks !== b.runs[i].leakage[k].chunks) throw new Error("leakage"); });
  });' || fail "eval over partitions: not the plain knowledge base's figures"
ok "eval over 3 partitions: the plain knowledge base's bits per byte and leakage table (exact search)"

expect_fail 1 "a knowledge base of 3 partitions" "$RETRO" index info kb
expect_fail 1 "3 partitions; 2 were asked for" "$RETRO" index add kb docs --partitions 2
ok "one-partition commands and another count are refused in one line"
