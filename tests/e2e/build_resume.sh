#!/usr/bin/env bash
# build_resume.sh - `retro index build` killed with SIGKILL at its checkpoints
# (once a generation's files are written but before the manifest names them,
# and once it does), then run again: it resumes from the last checkpoint
# without refitting its projection or retraining its quantizer, embeds only
# the chunks above the last one saved, and ends with shard files equal byte for byte to those
# of a build that was never interrupted. Two plans: exact shards of projected
# vectors, and an inverted file.
source "$(dirname "$0")/lib.sh"

sotu_copies docs 3   # about 24 K chunks: six batches of embedding, a checkpoint after each
"$RETRO" index add store docs --quiet > /dev/null

# the shards' checksums and what the manifest says of the index, generation and file names aside
summary() {
    node -e 'const x = require(process.argv[1]).index;
             console.log(JSON.stringify([x.embedder, x.factory, x.dim, x.nlist, x.nprobe, x.indexed_upto, x.trained_on,
                                          x.vectors, x.shards.map(s => [s.xxh64, s.bytes, s.codes && s.codes.xxh64])]))' "$PWD/$1/manifest.json"
}

check_plan() {   # NAME BUILD-OPTIONS...
    local name=$1
    shift
    rm -rf ref && cp -r store ref
    "$RETRO" index build ref --quiet --checkpoint 0 "$@" > ref.txt
    local want
    want=$(summary ref)
    local points="checkpoint-files:1 checkpoint:1 checkpoint-files:3 checkpoint:4"
    [ "${RETRO_SANITIZE:-OFF}" = ON ] && points="checkpoint:1 checkpoint-files:3"   # the sanitizer build: two of them
    for point in $points; do
        rm -rf kb && cp -r store kb
        rc=0
        (RETRO_TEST_CRASH=$point "$RETRO" index build kb --quiet --checkpoint 0.001 --threads 1 "$@" > /dev/null) 2> /dev/null || rc=$?
        [ "$rc" = 137 ] || fail "$name, $point: expected to be killed (137), exit $rc"
        local upto
        upto=$(node -e 'const x = require(process.argv[1]).index; console.log(x ? x.indexed_upto : "none")' "$PWD/kb/manifest.json")
        "$RETRO" index build kb --json "$@" > resumed.json
        # nothing named yet (killed before the first save was recorded): it starts over; else it resumes
        node -e 'const r = JSON.parse(require("fs").readFileSync("resumed.json", "utf8"));
                 const saved = process.argv[1] === "none" ? 0 : +process.argv[1];   /* chunk ids 1..n, none deleted */
                 if (r.created !== (process.argv[1] === "none") || r.embedded !== r.vectors - saved) {
                     console.error("created", r.created, "embedded", r.embedded, "of", r.vectors); process.exit(1); }' "$upto" ||
            fail "$name, $point: saved up to $upto, but the next build did not do what that asks"
        local got
        got=$(summary kb)
        [ "$got" = "$want" ] || fail "$name, $point: after resuming from chunk $upto the index differs:
  $got
  $want"
        ok "$name: killed at $point (saved up to chunk $upto), run again: the same shards as an uninterrupted build"
    done
    [ "$(ls kb/index | wc -l)" = "$(ls ref/index | wc -l)" ] || fail "$name: files left over: $(ls kb/index)"
}

check_plan "exact shards, 64 components" --project 64
check_plan "inverted file" --index-type IVF64,Flat
