# tests/e2e/lib.sh - sourced by the end-to-end scripts. $1 of the script is
# the retro binary; every script works in its own temporary directory.
set -euo pipefail
RETRO=${1:?usage: $0 path/to/retro}
RETRO=$(cd "$(dirname "$RETRO")" && pwd)/$(basename "$RETRO")
SRC=${RETRO_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DEFAULT_TOK=${RETRO_DEFAULT_TOKENIZER:-$SRC/datasets/tokenizer.rtok}
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/retro-e2e-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
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
