#!/usr/bin/env bash
# A full disk during `retro index add`: a one-line error, the batch rolled back,
# the store still readable, and once there is room again the same command
# finishes with exactly the store of an uninterrupted run. Needs to mount a
# small tmpfs (root); elsewhere it says so and checks nothing.
source "$(dirname "$0")/lib.sh"

mkdir tiny
if ! mount -t tmpfs -o size=3m tmpfs tiny 2>/dev/null; then
    echo "skipped: cannot mount a tmpfs here (needs root)"
    exit 0
fi
trap 'umount "$WORK/tiny" 2>/dev/null; rm -rf "$WORK"' EXIT

corpus=$SRC/datasets/sotu
"$RETRO" index add ref "$corpus" --quiet > /dev/null
"$RETRO" index dump ref > ref.dump

expect_fail 1 "tiny/kb/store: no space left on device" "$RETRO" index add tiny/kb "$corpus" --quiet
"$RETRO" index info tiny/kb --json > info.json || fail "the store must stay readable after a full disk"
ok "full disk: one-line error, store readable ($(json_get documents < info.json) documents committed)"

mount -o remount,size=64m tiny || fail "remount"
"$RETRO" index add tiny/kb "$corpus" --quiet > /dev/null
"$RETRO" index dump tiny/kb > kb.dump
cmp -s ref.dump kb.dump || fail "after freeing space the store differs from an uninterrupted run"
ok "after freeing space, the same command finished: store equals the uninterrupted one"
