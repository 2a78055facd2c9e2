# tests/e2e/lib.sh - sourced by the end-to-end scripts. $1 of the script is
# the retro binary; every script works in its own temporary directory.
set -euo pipefail
RETRO=${1:?usage: $0 path/to/retro}
RETRO=$(cd "$(dirname "$RETRO")" && pwd)/$(basename "$RETRO")
SRC=${RETRO_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DEFAULT_TOK=${RETRO_DEFAULT_TOKENIZER:-$SRC/datasets/tokenizer.rtok}
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/retro-e2e-XXXXXX)
serve_pids=()
e2e_cleanup() {
    for p in "${serve_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap e2e_cleanup EXIT
cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
# expect_fail CODE PATTERN cmd...: the command exits with CODE and prints one
# line matching PATTERN on stderr.
expect_fail() {
    local code=$1 pat=$2; shift 2
    local rc=0
    "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" = "$code" ] || { cat err.txt >&2; fail "expected exit $code, got $rc: $*"; }
    grep -qE "$pat" err.txt || { cat err.txt >&2; fail "stderr does not match '$pat': $*"; }
    [ "$(wc -l < err.txt)" -le 2 ] || { cat err.txt >&2; fail "more than a short error: $*"; }
}
json_get() { node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));let v=j;for(const k of process.argv[1].split("."))v=v[k];console.log(v)' "$1"; }
# sotu_kb N: the first N bundled State of the Union addresses copied into docs/, ingested and indexed as kb
sotu_kb() {
    mkdir -p docs
    ls "$SRC"/datasets/sotu/*.txt | head -"$1" | xargs -I{} cp {} docs/
    "$RETRO" index add kb docs --quiet > /dev/null
    "$RETRO" index build kb > /dev/null
}
# tiny_model KB DIR: a small RETRO model trained on KB in seconds (its text is noise; the server's tests
# need a model, not a good one)
tiny_model() {
    "$RETRO" train "$1" -o "$2" --steps 3 --context 128 --width 32 --layers 2 --heads 2 --batch 2 --eval-seqs 2 \
        --val-frac 0.3 --quiet > /dev/null 2>&1
}
# sotu_copies DIR N: the bundled addresses N (1..9) times over in DIR, each copy marked in its first line
# (nine: about 72 K chunks, a shard large enough for 4-bit codes)
sotu_copies() {
    mkdir -p "$1"
    local f copy
    for f in "$SRC"/datasets/sotu/*.txt; do
        for copy in $(echo a b c d e f g h i | cut -d' ' -f1-"$2"); do
            { echo "Copy $copy of $(basename "$f")."; cat "$f"; } > "$1/$copy-$(basename "$f")"
        done
    done
}
# serve_start ARGS...: `retro serve ARGS` on a random loopback port, waited for until /health answers 200;
# sets port, url and serve_pid (stopped at exit); its stderr goes to serve.err. A port that another
# process took first (tests run side by side) is given up for another.
serve_start() {
    local attempt i
    for attempt in 1 2 3 4 5; do
        port=$(( 20000 + RANDOM % 20000 ))
        url=http://127.0.0.1:$port
        "$RETRO" serve --port $port "$@" 2> serve.err &
        serve_pid=$!
        serve_pids+=($serve_pid)
        for i in $(seq 1 300); do   # bound (it says so) before its /health counts: the port may be another's
            if ! kill -0 $serve_pid 2>/dev/null; then
                grep -q "Address already in use" serve.err && continue 2
                cat serve.err >&2
                fail "the server died"
            fi
            grep -q "listening on" serve.err && [ "$(curl -s -o /dev/null -w '%{http_code}' $url/health)" = 200 ] && return 0
            sleep 0.1
        done
        fail "the server did not get ready"
    done
    fail "no free port in 5 tries"
}
# serve_stop: SIGTERM to the last server started; it must exit 0
serve_stop() { kill -TERM $serve_pid; wait $serve_pid || fail "serve did not stop cleanly"; }
