#!/usr/bin/env bash
# tokenizer_cli.sh RETRO - `retro tokenizer train|encode|decode|info` end to
# end: help and usage errors, training (files, directories, stdin), encode /
# decode round trips on text and random bytes, JSON, bad ids, corrupt files.
set -uo pipefail
retro=${1:?usage: tokenizer_cli.sh RETRO}
src=${RETRO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect STATUS CMD...: runs CMD, stdout/stderr in $tmp/out, $tmp/err
expect() {
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    [ "$got" = "$want" ] || fail "exit $got (want $want): $* : $(head -c 300 "$tmp/err")"
}

# help and usage errors
for c in train encode decode info; do
    expect 0 "$retro" tokenizer $c --help
    grep -q "^usage: retro tokenizer $c" "$tmp/out" || fail "$c --help prints no usage"
done
expect 0 "$retro" tokenizer --help
expect 2 "$retro" tokenizer
expect 2 "$retro" tokenizer frobnicate
expect 2 "$retro" tokenizer encode --bogus
expect 2 "$retro" tokenizer train "$src/datasets/sotu"
expect 2 "$retro" tokenizer train -o "$tmp/x.rtok"
expect 2 "$retro" tokenizer train --vocab-size 100 -o "$tmp/x.rtok" "$src/datasets/sotu"
expect 2 "$retro" tokenizer train --vocab-size abc -o "$tmp/x.rtok" "$src/datasets/sotu"
expect 2 "$retro" tokenizer info --tokenizer a.rtok --gpt2 somedir
expect 2 "$retro" tokenizer decode extra-arg

# training: a directory with text, a binary file and a hidden directory
mkdir -p "$tmp/corpus/sub" "$tmp/corpus/.hidden"
cp "$src/datasets/sotu/1961_john_f_kennedy_d.txt" "$tmp/corpus/"
cp "$src/datasets/sotu/1984_ronald_reagan_r.txt" "$tmp/corpus/sub/"
head -c 5000 /dev/urandom > "$tmp/corpus/.hidden/noise.txt"
printf 'binary\0data' > "$tmp/corpus/blob.bin"
expect 0 "$retro" tokenizer train --vocab-size 600 -o "$tmp/t.rtok" "$tmp/corpus"
grep -q "600 tokens" "$tmp/out" || fail "train summary: $(cat "$tmp/out")"
grep -q "from 2 files" "$tmp/out" || fail "train did not skip binary/hidden files: $(cat "$tmp/out")"
[ -s "$tmp/err" ] && ! grep -q "skipped 1 non-text" "$tmp/err" && fail "unexpected stderr: $(cat "$tmp/err")"
# the same input gives the same file; stdin gives the same tokenizer too
expect 0 "$retro" tokenizer train --vocab-size=600 --output "$tmp/t2.rtok" "$tmp/corpus/sub" "$tmp/corpus/1961_john_f_kennedy_d.txt"
cmp -s "$tmp/t.rtok" "$tmp/t2.rtok" || fail "training is not deterministic"
cat "$tmp/corpus/1961_john_f_kennedy_d.txt" | "$retro" tokenizer train --vocab-size 600 -o "$tmp/t3.rtok" - "$tmp/corpus/sub" >/dev/null 2>&1 \
    || fail "train from stdin"
cmp -s "$tmp/t.rtok" "$tmp/t3.rtok" || fail "stdin training differs"
expect 1 "$retro" tokenizer train -o "$tmp/x.rtok" "$tmp/corpus/blob.bin"
grep -q "blob.bin" "$tmp/err" || fail "binary file error does not name the file"
expect 1 "$retro" tokenizer train -o "$tmp/x.rtok" "$tmp/missing"

# info
expect 0 "$retro" tokenizer info --tokenizer "$tmp/t.rtok" --json
grep -q '"vocab_size":600' "$tmp/out" || fail "info --json: $(cat "$tmp/out")"
grep -q '"special":\[{"id":599,"text":"<|endoftext|>"}\]' "$tmp/out" || fail "info --json specials: $(cat "$tmp/out")"
hash=$(sed -n 's/.*"hash":"\([0-9a-f]*\)".*/\1/p' "$tmp/out")
[ ${#hash} = 32 ] || fail "hash '$hash'"
grep -q "$hash" <("$retro" tokenizer train --vocab-size 600 -o "$tmp/t4.rtok" "$tmp/corpus" 2>&1) || fail "train prints another hash"
expect 0 "$retro" tokenizer info
grep -q "vocab size: *4096" "$tmp/out" || fail "default tokenizer info: $(cat "$tmp/out")"
RETRO_DEFAULT_TOKENIZER="$tmp/t.rtok" "$retro" tokenizer info | grep -q "vocab size: *600" || fail "RETRO_DEFAULT_TOKENIZER ignored"

# round trips: text, random bytes (invalid UTF-8), empty input
cp "$src/tests/tokenizer/multilingual.txt" "$tmp/text"
head -c 200000 /dev/urandom > "$tmp/random"
: > "$tmp/empty"
for tok in "--tokenizer=$tmp/t.rtok" "--tokenizer $src/datasets/tokenizer.rtok"; do
    for f in text random empty; do
        # shellcheck disable=SC2086
        "$retro" tokenizer encode $tok < "$tmp/$f" > "$tmp/ids" || fail "encode $f"
        # shellcheck disable=SC2086
        "$retro" tokenizer decode $tok < "$tmp/ids" > "$tmp/back" || fail "decode $f"
        cmp -s "$tmp/$f" "$tmp/back" || fail "round trip of $f with $tok"
        # shellcheck disable=SC2086
        "$retro" tokenizer encode $tok --json < "$tmp/$f" > "$tmp/ids.json" || fail "encode --json $f"
        [ "$(head -c 1 "$tmp/ids.json")" = "[" ] || fail "--json output is not an array"
        # shellcheck disable=SC2086
        "$retro" tokenizer decode $tok < "$tmp/ids.json" > "$tmp/back" || fail "decode json $f"
        cmp -s "$tmp/$f" "$tmp/back" || fail "JSON round trip of $f with $tok"
    done
done
[ "$(wc -l < "$tmp/ids")" = 1 ] || fail "ids are not one line"
# the special token decodes to its text but is never produced
printf 'a<|endoftext|>b' | "$retro" tokenizer encode --tokenizer "$tmp/t.rtok" | grep -qw 599 && fail "encode emitted <|endoftext|>"
[ "$(echo 97 599 98 | "$retro" tokenizer decode --tokenizer "$tmp/t.rtok")" = "a<|endoftext|>b" ] || fail "decode of the special"

# bad ids
for bad in "1 2 600" "12 x" "-1" "99999999999" "[1,2" "[1 2]" "[1],"; do
    echo "$bad" > "$tmp/bad"
    expect 1 "$retro" tokenizer decode --tokenizer "$tmp/t.rtok" < "$tmp/bad"
    grep -q "^retro: " "$tmp/err" || fail "bad ids '$bad': message '$(cat "$tmp/err")'"
    [ ! -s "$tmp/out" ] || fail "bad ids '$bad' wrote output"
done

# corrupt and missing tokenizer files: one line naming the file, exit 1
head -c 1500 "$tmp/t.rtok" > "$tmp/trunc.rtok"
cp "$tmp/t.rtok" "$tmp/flip.rtok"
printf '\x07' | dd of="$tmp/flip.rtok" bs=1 seek=2000 conv=notrunc 2>/dev/null
for f in trunc.rtok flip.rtok missing.rtok; do
    for c in info encode decode; do
        expect 1 "$retro" tokenizer $c --tokenizer "$tmp/$f" < /dev/null
        [ "$(wc -l < "$tmp/err")" = 1 ] || fail "$c $f: not one line: $(cat "$tmp/err")"
        grep -q "^retro: .*$f" "$tmp/err" || fail "$c $f: error does not name the file: $(cat "$tmp/err")"
    done
done

if [ $fails -ne 0 ]; then
    echo "tokenizer_cli: $fails failure(s)" >&2
    exit 1
fi
echo "tokenizer_cli: ok"
