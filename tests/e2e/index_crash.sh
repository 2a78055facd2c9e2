#!/usr/bin/env bash
# Crash-and-resume: `retro index add` killed with SIGKILL at many points, then
# run again, must end with exactly the store an uninterrupted run builds.
source "$(dirname "$0")/lib.sh"

corpus=$SRC/datasets/sotu
args=(--quiet --batch-size 120k)

"$RETRO" index add ref "$corpus" "${args[@]}" > /dev/null
"$RETRO" index dump ref > ref.dump
[ -s ref.dump ] || fail "empty reference dump"

# deterministic kill points around the commits
for point in before-commit:1 after-commit:1 before-commit:4 after-commit:9 after-commit:15; do
    rm -rf kb
    rc=0
    (RETRO_TEST_CRASH=$point "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null) 2>/dev/null || rc=$?
    [ "$rc" = 137 ] || fail "$point: expected to be killed (137), exit $rc"
    "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null
    "$RETRO" index dump kb > kb.dump
    cmp -s ref.dump kb.dump || { diff ref.dump kb.dump | head -5 >&2; fail "store after a crash at $point differs"; }
    ok "killed at $point, resumed: store equals the uninterrupted one"
done

# killed twice: once in the first run, once while resuming
rm -rf kb
(RETRO_TEST_CRASH=after-commit:3 "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null) 2>/dev/null || true
(RETRO_TEST_CRASH=before-commit:2 "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null) 2>/dev/null || true
"$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null
"$RETRO" index dump kb > kb.dump
cmp -s ref.dump kb.dump || fail "store after two crashes differs"
ok "killed twice, resumed: store equals the uninterrupted one"

# kill -9 from outside at random moments until a run completes
for trial in 1 2 3; do
    rm -rf kb
    kills=0
    for attempt in $(seq 1 20); do
        "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null 2>&1 &
        pid=$!
        sleep "$(printf '0.%03d' $((RANDOM % 200 + 5)))"
        if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
        { wait "$pid" && break; } 2>/dev/null || true
    done
    "$RETRO" index add kb "$corpus" "${args[@]}" > /dev/null
    "$RETRO" index dump kb > kb.dump
    cmp -s ref.dump kb.dump || fail "store after $kills random kills differs (trial $trial)"
    ok "trial $trial: $kills random kill -9s, then resumed: store equals the uninterrupted one"
done
