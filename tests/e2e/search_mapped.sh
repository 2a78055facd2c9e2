#!/usr/bin/env bash
# search_mapped.sh - a shard large enough to be scanned through 4-bit codes
# has them saved beside it (gN-SSS.sq4, named in the manifest); searches map
# them instead of reading the shard, with the results of an exact search at
# rank 1; `retro index check` verifies them (a flipped byte is reported; a
# search, which does not read them whole, still answers); a truncated code
# file is refused at open, naming it; a rebuild replaces them.
source "$(dirname "$0")/lib.sh"

# 9 marked copies of the bundled addresses, about 72 K chunks in one shard (codes from 64 Ki vectors a shard)
sotu_copies docs 9
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb --shards 1 > build.txt
codes=$(ls kb/index/*.sq4)
[ "$(echo "$codes" | wc -l)" = 1 ] || fail "no codes beside the shard: $(ls kb/index)"
grep -q "\"codes\"" kb/manifest.json || fail "the manifest does not name the codes"
ok "4-bit codes saved beside a shard of $(grep -o '[0-9,]* vectors in' build.txt)"

# a passage with a fifth of its words dropped: the mapped search and an exact search agree at rank 1
q=$(tr -s ' \n' '\n' < "$SRC/datasets/sotu/$(ls "$SRC"/datasets/sotu | sed -n 20p)" | sed -n '400,449p' | awk 'NR % 5 { printf "%s ", $0 }')
[ -n "$q" ] || fail "no query text"
"$RETRO" search kb "$q" -k 3 --mode vector --json > mapped.json
"$RETRO" search kb "$q" -k 3 --mode vector --rerank 0 --json > exact.json
first() {   # the first hit of a --json search (one line per hit): its document (copy letter aside), span and score
    head -1 | node -e 'const h = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(h.path.replace(/.*\/[a-i]-/, "") + " " + h.byte_start + " " + h.score.toFixed(5))'
}
m=$(first < mapped.json) e=$(first < exact.json)
[ -n "$m" ] && [ "$m" = "$e" ] || fail "mapped '$m', exact '$e'"
ok "the mapped search's first hit is the exact search's: $m"

"$RETRO" index check kb > check.txt || fail "a healthy knowledge base fails: $(cat check.txt)"
cp "$codes" codes.good
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-100] ^= 0x11; open(sys.argv[2], "wb").write(b)' codes.good "$codes"
rc=0
"$RETRO" index check kb > check.txt || rc=$?
[ "$rc" = 1 ] || fail "index check passes damaged codes: $(cat check.txt)"
grep -q "$(basename "$codes"): checksum mismatch" check.txt || fail "index check does not name the codes: $(cat check.txt)"
"$RETRO" search kb "$q" -k 1 --mode vector > /dev/null || fail "a search refuses codes it does not verify"
head -c 5000 codes.good > "$codes"
expect_fail 1 "$(basename "$codes"): 5000 bytes where the manifest records" "$RETRO" search kb "$q" --mode vector
cp codes.good "$codes"
ok "damaged codes: reported by index check, a truncated file refused at open"

echo "A new address about lighthouses, harbours and the keepers of the coast." > docs/new.txt
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb > /dev/null
[ "$(ls kb/index/*.sq4)" != "$codes" ] && [ "$(ls kb/index/*.sq4 | wc -l)" = 1 ] || fail "a rebuild did not replace the codes: $(ls kb/index)"
"$RETRO" search kb "lighthouses harbours keepers coast" -k 1 --mode vector | grep -q "new.txt" || fail "the rebuilt codes miss the new document"
"$RETRO" index check kb > /dev/null || fail "index check after a rebuild"
ok "a rebuild writes new codes and removes the old"
