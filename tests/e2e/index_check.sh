#!/usr/bin/env bash
# index_check.sh - `retro index check`: a healthy knowledge base passes (deleted
# chunks' vectors and unindexed chunks are not problems); a changed chunk
# token, counters that disagree, a damaged shard file and a truncated store
# are each reported, naming what is wrong, with exit status 1.
source "$(dirname "$0")/lib.sh"
command -v mdb_dump >/dev/null || { echo "skipped: no mdb_dump (lmdb-utils)"; exit 0; }

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -6 | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet >/dev/null
"$RETRO" index build kb >/dev/null
"$RETRO" index check kb > ok.txt || fail "a healthy knowledge base fails: $(cat ok.txt)"
grep -q "^ok: no problems" ok.txt || fail "no verdict: $(cat ok.txt)"
"$RETRO" index check kb --json > ok.json
[ "$(json_get ok < ok.json)" = true ] || fail "--json: $(cat ok.json)"
[ "$(json_get sampled < ok.json)" -gt 0 ] && [ "$(json_get sampled < ok.json)" = "$(json_get found_own_vector < ok.json)" ] ||
    fail "sampled chunks do not find their own vectors: $(cat ok.json)"

# deleted documents leave stale vectors, new ones wait for a build: neither is a problem
"$RETRO" index rm kb "docs/$(ls docs | head -1)" >/dev/null
printf 'A new document, not indexed yet, about lighthouses and harbours.\n' > docs/new.txt
"$RETRO" index add kb docs --quiet >/dev/null
"$RETRO" index check kb --json > st.json || fail "stale vectors or unindexed chunks are reported as problems: $(cat st.json)"
[ "$(json_get stale_vectors < st.json)" -gt 0 ] || fail "no stale vectors counted: $(cat st.json)"
[ "$(json_get unindexed_chunks < st.json)" -gt 0 ] || fail "no unindexed chunks counted: $(cat st.json)"
ok "a healthy knowledge base passes, with stale vectors and unindexed chunks counted"

# damage: FROM TO edits one record of database DB (mdb_dump / mdb_load of lmdb-utils)
edit_record() {   # DB KEY_HEX (empty: the first record) OFFSET_HEXCHARS NEW_HEX (ALT_HEX if it is there already)
    mdb_dump -s "$1" kb/store > db.dump
    awk -v key=" $2" -v off="$3" -v new="$4" -v alt="$5" '
        found == 1 {
            old = substr($0, 2 + off, length(new))
            $0 = " " substr($0, 2, off) (old == new ? alt : new) substr($0, 2 + off + length(new)); found = 2
        }
        found == 0 && hdr && (key == " " || $0 == key) { found = 1 }
        $0 == "HEADER=END" { hdr = 1 }
        { print }' db.dump > db.new
    cmp -s db.dump db.new && fail "edit_record: nothing changed"
    mdb_load -s "$1" kb/store < db.new 2> load.err || { cat load.err >&2; fail "mdb_load"; }
}
cp -a kb kb.good
# the first chunk's first token (a record's tokens start at byte 32: hex character 64)
edit_record chunks "" 64 20000000 21000000
rc=0; "$RETRO" index check kb > bad.txt || rc=$?
[ "$rc" = 1 ] || fail "a changed token: exit $rc"
grep -qE "problem: document [0-9]+: chunk [0-9]+: its tokens do not decode to its span of the text" bad.txt ||
    fail "a changed token: $(cat bad.txt)"
grep -q "PROBLEMS FOUND" bad.txt || fail "no verdict on a damaged chunk"
ok "a changed token is found"

rm -rf kb && cp -a kb.good kb
edit_record meta 636f756e74657273 32 09 0a   # the document count's low byte
"$RETRO" index check kb > bad.txt && fail "counters that disagree pass"
grep -q "counters .* disagree with the records" bad.txt || fail "counters: $(cat bad.txt)"
ok "counters that disagree with the records are found"

rm -rf kb && cp -a kb.good kb
shard=$(ls kb/index/*.faiss | head -1)
printf '\x55' | dd of="$shard" bs=1 seek=200 conv=notrunc status=none
"$RETRO" index check kb > bad.txt && fail "a damaged shard passes"
grep -qiE "checksum|xxh64" bad.txt || fail "shard: $(cat bad.txt)"
ok "a damaged shard file is found"

rm -rf kb && cp -a kb.good kb
sz=$(stat -c %s kb/store/data.mdb)
truncate -s $((sz / 2)) kb/store/data.mdb
expect_fail 1 "data.mdb: truncated" "$RETRO" index check kb
expect_fail 1 "data.mdb: truncated" "$RETRO" search kb "taxes"
ok "a truncated store is refused with a one-line error, never a signal"
