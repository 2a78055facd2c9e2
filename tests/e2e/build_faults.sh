#!/usr/bin/env bash
# build_faults.sh - `retro index build` killed with SIGKILL at many points, and
# index build and train on a full disk: the knowledge base stays searchable
# at its last committed generation (it passes `retro index check`), the
# checkpoint stays loadable, the error is one line, and the rerun ends
# identical to an uninterrupted run.
source "$(dirname "$0")/lib.sh"

mkdir docs more
ls "$SRC"/datasets/sotu/*.txt | head -24 | xargs -I{} cp {} docs/
ls "$SRC"/datasets/sotu/*.txt | sed -n 25,40p | xargs -I{} cp {} more/
q="the economy, jobs and taxes"
"$RETRO" index add ref docs more --quiet > /dev/null
"$RETRO" index build ref > /dev/null
# an earlier generation to fall back on: docs indexed, then more added; the
# reference is the uninterrupted build of the same state
"$RETRO" index add base docs --quiet > /dev/null
"$RETRO" index build base > /dev/null
"$RETRO" index add base more --quiet > /dev/null
cp -a base refb
t0=$(date +%s%N)
"$RETRO" index build refb > /dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
"$RETRO" search refb "$q" -k 8 --json | sed 's#/refb/#/KB/#g' > ref.search
"$RETRO" search refb "$q" -k 8 --json --mode lexical | sed 's#/refb/#/KB/#g' > ref.lexical

# SIGKILL at delays spread over the build's duration
kills=0
for i in $(seq 1 14); do
    rm -rf kb && cp -a base kb
    delay=$(/usr/bin/python3 -c "print(round($ms * $i / 14 / 1000.0 * 1.1, 3))")
    "$RETRO" index build kb > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null || true
    "$RETRO" index check kb > check.txt || { cat check.txt >&2; fail "killed after ${delay} s: index check fails"; }
    "$RETRO" search kb "$q" -k 8 > /dev/null || fail "killed after ${delay} s: not searchable"
    "$RETRO" index build kb > /dev/null || fail "killed after ${delay} s: the rerun fails"
    "$RETRO" search kb "$q" -k 8 --json | sed 's#/kb/#/KB/#g' | cmp -s - ref.search ||
        fail "killed after ${delay} s: the rerun searches differently from an uninterrupted build"
    "$RETRO" search kb "$q" -k 8 --json --mode lexical | sed 's#/kb/#/KB/#g' | cmp -s - ref.lexical ||
        fail "killed after ${delay} s: the rerun's lexical index differs from an uninterrupted build's"
    leftovers=$(ls kb/index | grep -vE '^(g[0-9]+-[0-9]{3}\.faiss|[^.]+\.df|hash-df-[0-9a-f]+\.bin)$' || true)
    [ -z "$leftovers" ] || fail "killed after ${delay} s: files left behind: $leftovers"
done
[ "$kills" -ge 3 ] || fail "only $kills of 14 builds were still running when killed (build takes ${ms} ms)"
ok "index build killed $kills times (build ${ms} ms): searchable at the last generation, reruns equal (vector and lexical)"

mkdir tiny
if ! mount -t tmpfs -o size=64m tmpfs tiny 2>/dev/null; then
    echo "skipped: cannot mount a tmpfs here (needs root)"
    exit 0
fi
trap 'umount "$WORK/tiny" 2>/dev/null; rm -rf "$WORK"' EXIT

# index build on a full disk: room for the store, not for the vectors
cp -a base tiny/kb
used=$(du -sk tiny | cut -f1)
mount -o remount,size=$((used + 300))k tiny || fail "remount"
expect_fail 1 "no space left on device|disk full|No space" "$RETRO" index build tiny/kb
"$RETRO" index check tiny/kb > check.txt || { cat check.txt >&2; fail "full disk: index check fails"; }
"$RETRO" search tiny/kb "$q" -k 8 > /dev/null || fail "full disk: not searchable at the last generation"
mount -o remount,size=64m tiny || fail "remount"
"$RETRO" index build tiny/kb > /dev/null || fail "after freeing space the build fails"
"$RETRO" search tiny/kb "$q" -k 8 --json | sed 's#/tiny/kb/#/KB/#g' | cmp -s - ref.search ||
    fail "after freeing space the index searches differently"
"$RETRO" search tiny/kb "$q" -k 8 --json --mode lexical | sed 's#/tiny/kb/#/KB/#g' | cmp -s - ref.lexical ||
    fail "after freeing space the lexical index differs"
ok "index build on a full disk: one-line error, the last generation searchable, the rerun equal"

# train on a full disk: the earlier checkpoint survives; once there is room, the resume finishes
tiny_model=(--context 128 --width 64 --layers 2 --heads 2 --batch 2 --eval-seqs 2 --quiet)
"$RETRO" train ref -o mref --steps 2 "${tiny_model[@]}" > /dev/null 2>&1
"$RETRO" train ref -o mref --resume --steps 4 --quiet > /dev/null 2>&1
"$RETRO" train ref -o tiny/m --steps 2 "${tiny_model[@]}" > /dev/null 2>&1
cp tiny/m/model.safetensors m2.safetensors
used=$(du -sk tiny | cut -f1)
mount -o remount,size=$((used + 200))k tiny || fail "remount"
expect_fail 1 "no space left on device|disk full|No space" "$RETRO" train ref -o tiny/m --resume --steps 4 --quiet
cmp -s tiny/m/model.safetensors m2.safetensors || fail "full disk: the earlier checkpoint changed"
"$RETRO" generate tiny/m "x" -n 1 --no-retrieval > /dev/null 2>&1 || fail "full disk: the checkpoint does not load"
mount -o remount,size=64m tiny || fail "remount"
"$RETRO" train ref -o tiny/m --resume --steps 4 --quiet > /dev/null 2>&1 || fail "after freeing space the resume fails"
cmp -s tiny/m/model.safetensors mref/model.safetensors || fail "after freeing space the resumed run differs"
ok "train on a full disk: one-line error, the earlier checkpoint intact, the resume equal to an uninterrupted run"
