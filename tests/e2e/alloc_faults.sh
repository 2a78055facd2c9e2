#!/usr/bin/env bash
# alloc_faults.sh - allocation failures injected through lib/alloc
# (RETRO_TEST_ALLOC_FAIL=N: the Nth allocation and every one after it fail),
# N swept over each command's allocations, for index add, index build,
# search, train, generate and eval: every run ends in exit status 1 with a
# one-line error, never a signal or an assertion; the knowledge base passes
# `retro index check` and the checkpoint stays loadable; the rerun succeeds
# and ends where an uninterrupted run does.
source "$(dirname "$0")/lib.sh"

allocs() {   # cmd...: how many allocations a successful run makes
    RETRO_TEST_ALLOC_COUNT=1 "$@" > /dev/null 2> count.txt || { cat count.txt >&2; fail "reference run: $*"; }
    sed -n 's/^retro: \([0-9]*\) allocations$/\1/p' count.txt | tail -1
}
points() {   # COUNT: 1..12, then about 24 more spread evenly in log scale up to COUNT (RETRO_FAULTS_FULL=1: every one)
    /usr/bin/python3 -c '
import sys, os
c = int(sys.argv[1]); s = set(range(1, min(c, 12) + 1))
if os.environ.get("RETRO_FAULTS_FULL") == "1": s = set(range(1, c + 1))
if c > 12:
    for i in range(25): s.add(int(round(12 * (c / 12) ** (i / 24))))
print(" ".join(str(x) for x in sorted(s) if x <= c))' "$1"
}
sweep() {   # NAME AFTER_FN cmd...: runs cmd with each failure point; AFTER_FN checks the state after each
    local name=$1 after=$2 n c rc
    shift 2
    "$before"
    c=$(allocs "$@")
    [ -n "$c" ] && [ "$c" -gt 0 ] || fail "$name: no allocation count"
    local runs=0
    for n in $(points "$c"); do
        "$before"
        rc=0
        RETRO_TEST_ALLOC_FAIL=$n "$@" > out.txt 2> err.txt || rc=$?
        if [ "$rc" != 0 ]; then
            [ "$rc" = 1 ] || { cat err.txt >&2; fail "$name, allocation $n of $c: exit $rc"; }
            # one error line (a command's own progress lines, "train: ...", may come before it)
            [ "$(grep -c "^retro: " err.txt)" = 1 ] && [ "$(tail -1 err.txt | cut -c1-7)" = "retro: " ] &&
                ! grep -qE "Assertion|AddressSanitizer|runtime error|LeakSanitizer" err.txt ||
                { cat err.txt >&2; fail "$name, allocation $n of $c: not a one-line error"; }
        fi
        "$after" "$n"
        runs=$((runs + 1))
    done
    ok "$name: $runs failure points of $c allocations, each a one-line error and a sound state"
}
noop() { :; }
before=noop

mkdir docs more
ls "$SRC"/datasets/sotu/*.txt | head -4 | xargs -I{} cp {} docs/
ls "$SRC"/datasets/sotu/*.txt | sed -n 5,7p | xargs -I{} cp {} more/
"$RETRO" index add ref docs more --quiet > /dev/null
"$RETRO" index dump ref > ref.dump

# index add: the batch lands whole or not at all; the rerun ends as an uninterrupted run
"$RETRO" index add base docs --quiet > /dev/null
"$RETRO" index dump base > base.dump
reset_kb() { rm -rf kb; cp -a base kb; }
after_add() {
    "$RETRO" index check kb > check.txt || { cat check.txt >&2; fail "index add, allocation $1: check fails"; }
    "$RETRO" index dump kb > kb.dump
    cmp -s kb.dump base.dump || cmp -s kb.dump <(sed 's#/ref/#/kb/#' ref.dump) || {
        "$RETRO" index add kb docs more --quiet > /dev/null
        "$RETRO" index dump kb | cmp -s - ref.dump || fail "index add, allocation $1: the rerun differs"
    }
}
before=reset_kb
sweep "index add" after_add "$RETRO" index add kb docs more --quiet
"$RETRO" index add kb docs more --quiet > /dev/null
"$RETRO" index dump kb | cmp -s - ref.dump || fail "index add: the final rerun differs from an uninterrupted run"

# index build: the index stays at its last generation (or none); the rerun searches as the reference
cp -a ref refi
"$RETRO" index build refi > /dev/null
"$RETRO" search refi "the economy and jobs" -k 5 --json > ref.search
reset_ref() { rm -rf kb; cp -a ref kb; }
after_build() {
    "$RETRO" index check kb > check.txt || { cat check.txt >&2; fail "index build, allocation $1: check fails"; }
    "$RETRO" index build kb > /dev/null || fail "index build, allocation $1: the rerun fails"
    "$RETRO" search kb "the economy and jobs" -k 5 --json | sed 's#/kb/#/refi/#g' | cmp -s - ref.search ||
        fail "index build, allocation $1: the rebuilt index searches differently"
}
before=reset_ref
sweep "index build" after_build "$RETRO" index build kb
before=noop

# search and generate: nothing to leave behind but the error
sweep "search" noop "$RETRO" search refi "the economy and jobs" -k 5
tiny=(--context 128 --width 32 --layers 2 --heads 2 --batch 2 --eval-seqs 2 --val-frac 0.3 --quiet)
"$RETRO" train refi -o m0 --steps 2 "${tiny[@]}" > /dev/null 2>&1
cp -a m0 m0.ref

# train: a resumed run that fails leaves the checkpoint loadable; its rerun ends as the reference
"$RETRO" train refi -o mref --steps 2 "${tiny[@]}" > /dev/null 2>&1
"$RETRO" train refi -o mref --resume --steps 4 --quiet > /dev/null 2>&1
reset_m() { rm -rf m; cp -a m0.ref m; }
after_train() {
    "$RETRO" generate m "x" -n 1 --no-retrieval > /dev/null 2>&1 || fail "train, allocation $1: the checkpoint does not load"
    "$RETRO" train refi -o m --resume --steps 4 --quiet > /dev/null 2>&1 || fail "train, allocation $1: the rerun fails"
    cmp -s m/model.safetensors mref/model.safetensors || fail "train, allocation $1: the rerun differs from the reference"
}
before=reset_m
sweep "train" after_train "$RETRO" train refi -o m --resume --steps 4 --quiet
before=noop
sweep "generate" noop "$RETRO" generate m0 "The economy" --kb refi -n 70
sweep "eval" noop "$RETRO" eval --model m0 --kb refi --split val --val-frac 0.3
