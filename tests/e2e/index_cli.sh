#!/usr/bin/env bash
# `retro index` through the real binary: the bundled corpus, incremental runs,
# standard input, JSON output, and every kind of bad input.
source "$(dirname "$0")/lib.sh"

# --- the bundled corpus --------------------------------------------------------
"$RETRO" index add kb "$SRC/datasets/sotu" --quiet --json > add1.json
[ "$(json_get docs_added < add1.json)" = 63 ] || fail "63 documents expected"
"$RETRO" index info kb --json > info.json
[ "$(json_get documents < info.json)" = 63 ] || fail "info: 63 documents"
[ "$(json_get schema_version < info.json)" = 1 ] || fail "info: schema 1"
chunks=$(json_get chunks < info.json)
tokens=$(json_get tokens < info.json)
[ "$chunks" -ge $(( tokens / 64 )) ] && [ "$chunks" -le $(( tokens / 64 + 63 )) ] || fail "chunk count $chunks for $tokens tokens"
"$RETRO" index info kb > info.txt
grep -q "^documents *63 from 63 files" info.txt || fail "human info"
"$RETRO" index add kb "$SRC/datasets/sotu" --quiet --json > add2.json
[ "$(json_get files_unchanged < add2.json)" = 63 ] && [ "$(json_get docs_added < add2.json)" = 0 ] || fail "second add must change nothing"
"$RETRO" index show kb 1 > show.txt; grep -q "1960_dwight_d_eisenhower_r.txt  bytes 0-" show.txt || fail "show names the source"
ok "bundled corpus: 63 documents, $chunks chunks, $tokens tokens; second add unchanged"

# --- standard input ----------------------------------------------------------------
echo "A note typed on standard input." | "$RETRO" index add kb - --name note1 --quiet > /dev/null
"$RETRO" index dump kb --no-tokens > dump.txt
grep -q '"path":"note1"' dump.txt || fail "stdin document recorded as note1"
"$RETRO" index rm kb note1 > rm.txt
grep -q "removed 1 files, 1 documents" rm.txt || fail "rm stdin document"
ok "standard input ingested under --name and removed by it"

# --- bad inputs: each skipped with its reason, the rest ingested ----------------------
mkdir bad
printf '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0' > bad/image.png
printf 'caf\xe9 cr\xe8me' > bad/latin1.txt
: > bad/empty.txt
printf '{"id":1,"text":"good record"}\n{"id":2,"text":"trunc' > bad/records.jsonl
head -c 50000000 < <(yes 'the single line goes on and on without a newline') | tr '\n' ' ' > bad/oneline.txt
echo "secret" > bad/unreadable.txt
chmod 000 bad/unreadable.txt
mkdir -p bad/loop && ln -s .. bad/loop/up
ln -s /nonexistent/target bad/dangling.txt
runner=("$RETRO")
if [ "$(id -u)" = 0 ]; then
    # root reads anything: run as nobody so that the file is really unreadable,
    # from copies nobody can reach wherever the checkout is
    chmod 777 "$WORK" && chmod -R a+rX bad && chmod 000 bad/unreadable.txt
    cp "$RETRO" "$WORK/retro-copy" && cp "$DEFAULT_TOK" "$WORK/tok-copy.rtok" && chmod 755 "$WORK/retro-copy"
    runner=(env RETRO_DEFAULT_TOKENIZER="$WORK/tok-copy.rtok" setpriv --reuid=65534 --regid=65534 --clear-groups
            "$WORK/retro-copy")
fi
"${runner[@]}" index add "$WORK/kb2" bad --quiet --json > bad.json || fail "ingest of bad inputs must not fail"
reason() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));const s=j.skipped.find(s=>s.path.endsWith(process.argv[1]));console.log(s?s.reason:"none")' "$1" < bad.json; }
[ "$(reason image.png)" = binary ] || fail "binary file: $(reason image.png)"
[ "$(reason empty.txt)" = empty ] || fail "empty file"
[ "$(reason unreadable.txt)" = unreadable ] || fail "unreadable file: $(reason unreadable.txt)"
[ "$(reason records.jsonl)" = "bad records" ] || fail "truncated jsonl line"
[ "$(reason dangling.txt)" = unreadable ] || fail "dangling link"
[ "$(reason latin1.txt)" = none ] || fail "invalid UTF-8 is replaced by default"
[ "$(json_get docs_added < bad.json)" = 3 ] || fail "latin1 + oneline + 1 record expected, got $(json_get docs_added < bad.json)"
"$RETRO" index info "$WORK/kb2" > info2.txt
grep -q "skipped files   4" info2.txt || fail "info lists the skipped files"
ok "bad inputs skipped with reasons: binary, empty, unreadable, truncated .jsonl line, dangling link; 50 MB line ingested"
"$RETRO" index add kb3 bad/latin1.txt --invalid-utf8 skip --quiet --json > skip.json
[ "$(node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(j.skipped[0].reason)' < skip.json)" = "invalid UTF-8" ] || fail "--invalid-utf8 skip"
ok "--invalid-utf8 skip skips the file"

# --- errors: one line naming the file, non-zero exit ---------------------------------------
mkdir notkb && echo x > notkb/file
expect_fail 1 "notkb: not a retro knowledge base" "$RETRO" index add notkb "$SRC/datasets/sotu"
expect_fail 1 "notkb: not a retro knowledge base" "$RETRO" index info notkb
expect_fail 1 "nokb: no such knowledge base" "$RETRO" index info nokb
head -c 1000 "$DEFAULT_TOK" > corrupt.rtok
expect_fail 1 "corrupt.rtok" "$RETRO" index add kb4 bad/latin1.txt --tokenizer corrupt.rtok
[ ! -e kb4 ] || fail "no knowledge base may be left after a refused tokenizer"
"$RETRO" tokenizer train --vocab-size 300 -o other.rtok "$SRC/datasets/sotu/1960_dwight_d_eisenhower_r.txt" > /dev/null 2>&1
expect_fail 1 "tokenizer" "$RETRO" index add kb bad/latin1.txt --tokenizer other.rtok
cp -r kb kbc && head -c 100000 /dev/urandom > kbc/store/data.mdb
expect_fail 1 "kbc/store" "$RETRO" index info kbc
expect_fail 1 "nosuchdir" "$RETRO" index add kb nosuchdir
expect_fail 1 "no documents from this path" "$RETRO" index rm kb /nonexistent.txt
expect_fail 2 "expected KB" "$RETRO" index add
expect_fail 2 "unknown format" "$RETRO" index add kb x --format pdf
ok "errors are one line naming the file, with exit 1 (usage: 2)"
for verb in add rm info dump show; do "$RETRO" index $verb --help > help.txt; grep -q usage help.txt || fail "$verb --help"; done
ok "--help on every verb"
