#!/usr/bin/env bash
# generate_cli.sh - `retro generate`, `retro eval` and `retro ask` end to end
# on a tiny model trained here: streaming and JSON output, sampling
# determinism, stop sequences, shown neighbours, retrieval on and off, the
# leakage filter's bookkeeping, and bad input.
source "$(dirname "$0")/lib.sh"

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -10 | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet >/dev/null
"$RETRO" index build kb >/dev/null
tiny=(--val-frac 0.3 --context 128 --width 32 --layers 2 --heads 2 --batch 2 --eval-seqs 2 --quiet)
"$RETRO" train kb -o retro --steps 3 "${tiny[@]}" >/dev/null
"$RETRO" train kb -o base --mode baseline --steps 3 "${tiny[@]}" >/dev/null

# generate: JSON, the same seed gives the same text, streaming prints the same text
"$RETRO" generate retro "The economy" --kb kb -n 150 --seed 7 --json > g1.json
"$RETRO" generate retro "The economy" --kb kb -n 150 --seed 7 --json > g2.json
[ "$(json_get text < g1.json)" = "$(json_get text < g2.json)" ] || fail "same seed, different text"
[ "$(json_get tokens < g1.json)" -le 150 ] || fail "more tokens than asked"
[ "$(json_get chunks_retrieved < g1.json)" -ge 2 ] || fail "no live retrieval: $(cat g1.json)"
"$RETRO" generate retro "The economy" --kb kb -n 150 --seed 7 > g.txt 2> g.err
[ "$(head -c -1 g.txt)" = "$(json_get text < g1.json)" ] || fail "streamed text differs from --json text"
ok "generate: deterministic, streamed, retrieves every 64 tokens"

"$RETRO" generate retro "The economy" --kb kb -n 150 --seed 3 --show-neighbours > /dev/null 2> show.err
grep -q "^\[retrieval for chunk 1\]" show.err || fail "no neighbours shown: $(head show.err)"
grep -qE "^  1\. .*docs/.*\.txt bytes [0-9]+-[0-9]+" show.err || fail "neighbour sources: $(head show.err)"
"$RETRO" generate retro "The economy" --no-retrieval -n 20 --json > nr.json
[ "$(json_get chunks_retrieved < nr.json)" = 0 ] || fail "--no-retrieval retrieved"
# a stop sequence: the text ends where it would have begun
first=$(json_get text < g1.json | head -c 12 | tail -c 3)
"$RETRO" generate retro "The economy" --kb kb -n 150 --seed 7 --stop "$first" --json > st.json
[ "$(json_get stopped < st.json)" = stop ] || fail "stop sequence not honoured: $(cat st.json)"
case "$(json_get text < st.json)" in *"$first"*) fail "the stop sequence was printed";; esac
ok "generate: neighbours shown, retrieval off, stop sequences"

# eval: a table and JSON; every run scores the same tokens; leakage counts add up
"$RETRO" eval --model retro --model base --kb kb --split val --val-frac 0.3 --json > ev.json
node -e '
const j = JSON.parse(require("fs").readFileSync("ev.json", "utf8"));
if (j.runs.length !== 3) throw "expected 3 runs (RETRO on, off, baseline)";
const t = j.runs[0].tokens;
for (const r of j.runs) {
  if (r.tokens !== t) throw "runs scored different tokens";
  if (!(r.bpb > 0 && r.bpb < 10)) throw "bpb " + r.bpb;
  const last = r.leakage[r.leakage.length - 1];
  if (last.chunks !== j.chunks || Math.abs(last.bpb - r.bpb) > 1e-9) throw "alpha 100% is not everything";
  for (let i = 1; i < r.leakage.length; i++) if (r.leakage[i].chunks < r.leakage[i-1].chunks) throw "counts not monotone";
}'
"$RETRO" eval --model retro --kb kb --split val --val-frac 0.3 --leak --json > leak.json
node -e '
const j = JSON.parse(require("fs").readFileSync("leak.json", "utf8"));
// with the document itself retrievable, almost every chunk finds itself
if (j.runs[0].leakage[3].chunks > j.chunks / 10) throw "--leak: chunks still without overlap";'
# --min-score: at -1 every neighbour is read (the plain run); at 1 none is, which
# must score exactly as retrieval off; the split of training documents also evaluates
"$RETRO" eval --model retro --kb kb --split val --val-frac 0.3 --min-score -1 --min-score 1 --json > ms.json
node -e '
const fs = require("fs");
const j = JSON.parse(fs.readFileSync("ms.json", "utf8")), p = JSON.parse(fs.readFileSync("ev.json", "utf8"));
const [all, none, off] = j.runs;
if (all.min_score !== -1 || none.min_score !== 1 || off.retrieval) throw "runs: " + JSON.stringify(j.runs);
if (all.neighbours_read !== 1 || none.neighbours_read !== 0) throw "neighbours read: " + all.neighbours_read + " " + none.neighbours_read;
if (Math.abs(all.bpb - p.runs[0].bpb) > 1e-9) throw "min score -1 differs from the plain run";
if (none.bpb !== off.bpb) throw "no neighbour read, yet not retrieval off: " + none.bpb + " " + off.bpb;
if (all.bpb === off.bpb) throw "retrieval changed nothing";'
"$RETRO" eval --model base --kb kb --split train --val-frac 0.3 --max-docs 2 > tr.txt
grep -q "^2 documents" tr.txt || fail "eval of the training split: $(cat tr.txt)"
"$RETRO" generate retro "The economy" --kb kb -n 70 --min-score 1 --show-neighbours > /dev/null 2> ms.err
grep -q "withheld: score .* below --min-score" ms.err || fail "withheld neighbours not shown: $(head ms.err)"
"$RETRO" eval --model base --kb kb docs/$(ls docs | head -1) > file.txt
grep -q "^1 documents" file.txt || fail "eval of a file: $(cat file.txt)"
ok "eval: runs, leakage filter, --min-score, training split, files"

# a model trained on aligned neighbours is evaluated and generates with them
"$RETRO" train kb -o ral --steps 3 --align "${tiny[@]}" >/dev/null
grep -aq '"align":"8"' ral/model.safetensors || fail "align not recorded"
"$RETRO" eval --model ral --model retro --kb kb --split val --val-frac 0.3 --json > al.json
node -e '
const j = JSON.parse(require("fs").readFileSync("al.json", "utf8"));
const a = j.runs.map(r => r.aligned).join();
if (a !== "true,false,false,false") throw "aligned runs: " + a;'
"$RETRO" eval --model ral --kb kb --split val --val-frac 0.3 > al.txt
grep -q "^ral  *aligned " al.txt || fail "aligned run not labelled: $(cat al.txt)"
"$RETRO" generate ral "The economy" --kb kb -n 70 --json > gal.json
[ "$(json_get chunks_retrieved < gal.json)" -ge 1 ] || fail "aligned model: no live retrieval"
ok "eval and generate retrieve aligned neighbours for a model trained on them"

# ask: an answer and its sources
"$RETRO" ask retro --kb kb "What did the president say about taxes?" -n 10 --json > ask.json
node -e '
const j = JSON.parse(require("fs").readFileSync("ask.json", "utf8"));
if (typeof j.answer !== "string" || j.sources.length < 1) throw "no answer or sources";
for (const s of j.sources) if (!s.path.endsWith(".txt") || !(s.byte_end > s.byte_start) || !s.text) throw "bad source";'
"$RETRO" ask retro --kb kb "taxes" -n 5 > ask.txt
grep -q "^Sources:" ask.txt || fail "no sources listed"
grep -q "^What the sources say:" ask.txt || fail "no quotes section"
grep -q "^What the model writes" ask.txt || fail "the generation is not labelled as the model's"
ok "ask: answer with sources"

# a known fact in one document: ask quotes the sentence that holds it and names that document first
mkdir facts
cp "$SRC"/datasets/sotu/1962_john_f_kennedy_d.txt "$SRC"/datasets/sotu/1990_george_bush_r.txt facts/
printf '%s\n\n' "Harbour notes for the autumn season." \
    "The old lighthouse on Gull Point was repainted red and white in the spring." \
    "The lighthouse keeper at Gull Point is named Agnes Ploughwright, and she has kept the light since 1971." \
    "Ferries to the island leave twice a day from the north pier." > facts/harbour.txt
"$RETRO" index add fkb facts --quiet >/dev/null
"$RETRO" index build fkb >/dev/null
"$RETRO" ask retro --kb fkb "Who is the lighthouse keeper at Gull Point?" -n 5 --json > fact.json
node -e '
const j = JSON.parse(require("fs").readFileSync("fact.json", "utf8"));
if (!j.sources.length || !j.sources[0].path.endsWith("facts/harbour.txt")) throw "first source: " + JSON.stringify(j.sources[0]);
const q = j.quotes[0];
if (!q || !q.text.includes("Agnes Ploughwright") || !q.path.endsWith("facts/harbour.txt")) throw "quote: " + JSON.stringify(j.quotes);
if (j.answer !== q.text) throw "the answer is not the best quote";
const text = require("fs").readFileSync("facts/harbour.txt");
if (text.slice(q.byte_start, q.byte_end).toString() !== q.text) throw "the quote is not its byte span";
if (typeof j.generated !== "string") throw "no generated text";'
ok "ask: the sentence holding a known fact is quoted from its document, with its byte span"

# bad input
expect_fail 1 "RETRO model.*--kb" "$RETRO" generate retro "x"
expect_fail 2 "top-p" "$RETRO" generate retro "x" --top-p 2 --kb kb
expect_fail 1 "nowhere: no such model" "$RETRO" generate nowhere "x" --kb kb
expect_fail 1 "model.safetensors" "$RETRO" generate docs "x" --kb kb
expect_fail 2 "split val or FILE" "$RETRO" eval --model base --kb kb
expect_fail 2 "empty" "$RETRO" ask retro --kb kb ""
expect_fail 2 "min-score must be" "$RETRO" eval --model retro --kb kb --split val --min-score 1.5
expect_fail 2 "min-score must be" "$RETRO" generate retro "x" --kb kb --min-score abc
ok "bad input gets one-line errors"
