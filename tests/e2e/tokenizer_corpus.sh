#!/usr/bin/env bash
# tokenizer_corpus.sh RETRO - `retro tokenizer train` takes from a folder what
# `retro index add` takes (both walk with rtr_corpus_walk and judge text with
# rtr_looks_binary): a file the corpus walker skips as binary is skipped by the
# trainer, a text file is read by both. The cases are the ones where the
# trainer's old check (a NUL in the first 64 KiB) disagreed: control codes
# without a NUL, and a NUL after the first 8 KiB.
source "$(dirname "$0")/lib.sh"

mkdir -p corpus/.hidden extra
cp "$SRC/datasets/sotu/1961_john_f_kennedy_d.txt" corpus/prose.txt
printf 'abcd\001%.0s' $(seq 1000) > corpus/controls.txt          # 20% control codes, no NUL
printf 'bell rung\a\a%.0s' $(seq 500) > corpus/bells.log         # 18%: no extension, sniffed
{ head -c 9000 corpus/prose.txt; printf '\0'; head -c 500 corpus/prose.txt; } > corpus/late-nul.txt
cp "$SRC/datasets/sotu/1984_ronald_reagan_r.txt" extra/more.txt
ln -s ../extra corpus/linked                                      # a link to a folder: followed
cp corpus/prose.txt corpus/.hidden/secret.txt                     # hidden: not read

# the corpus walker's verdicts
"$RETRO" index add kb corpus --quiet --json > add.json
verdict() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));const s=j.skipped.find(s=>s.path.endsWith(process.argv[1]));console.log(s?s.reason:"read")' "$1" < add.json; }
[ "$(verdict controls.txt)" = binary ] || fail "index add: controls.txt: $(verdict controls.txt)"
[ "$(verdict bells.log)" = binary ] || fail "index add: bells.log: $(verdict bells.log)"
[ "$(verdict late-nul.txt)" = read ] || fail "index add: late-nul.txt: $(verdict late-nul.txt)"
[ "$(verdict prose.txt)" = read ] || fail "index add: prose.txt: $(verdict prose.txt)"
"$RETRO" index dump kb --no-tokens > dump.txt
for f in corpus/prose.txt corpus/late-nul.txt extra/more.txt; do
    grep -q "\"path\":\"[^\"]*$f\"" dump.txt || fail "index add did not read $f"
done
grep -q 'controls.txt\|bells.log\|secret.txt' dump.txt && fail "index add read a binary or hidden file"
ok "index add: controls.txt and bells.log binary; prose.txt, late-nul.txt and the linked more.txt read"

# the trainer's: the same three files, the same skip
"$RETRO" tokenizer train --vocab-size 400 -o dir.rtok corpus > out.txt 2> err.txt || { cat err.txt >&2; fail "train on the folder"; }
grep -q "from 3 files" out.txt || fail "train read other files than index add: $(cat out.txt)"
grep -q "skipped 2 non-text files" err.txt || fail "train did not report the binary file: $(cat err.txt)"
"$RETRO" tokenizer train --vocab-size 400 -o named.rtok corpus/prose.txt corpus/late-nul.txt extra/more.txt > /dev/null \
    || fail "train on the three text files"
cmp -s dir.rtok named.rtok || fail "the folder's tokenizer is not that of prose.txt, late-nul.txt and more.txt"
ok "tokenizer train: the same three files read, controls.txt and bells.log skipped"

# a binary file named on the command line is an error naming it
expect_fail 1 'controls.txt: not a text file' "$RETRO" tokenizer train -o x.rtok corpus/controls.txt
[ ! -e x.rtok ] || fail "a tokenizer was written from a binary file"
ok "a named binary file: exit 1, one line naming it"
