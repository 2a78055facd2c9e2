#!/usr/bin/env bash
# serve_page.sh - the search page of `retro serve` (GET /), in headless Chromium
# driven by puppeteer-core (serve_page.js): served open, byte for byte the file
# compiled in; a 401 asks for the API key; a search shows the known sentence's
# file first with its words in <mark> and its markup as text; the ask box lists
# its sources and streams the model's generation (and shows the error of a
# server without a model); a file uploaded through the page is listed and found,
# then deleted through the page; documents in pages of 50 with "More"; a PNG
# screenshot.
# Without chromium or puppeteer-core it is skipped, unless RETRO_REQUIRE_BROWSER
# is set (scripts/test.sh sets it; scripts/setup.sh --tests installs both).
source "$(dirname "$0")/lib.sh"
browser=${RETRO_CHROMIUM:-/usr/bin/chromium}
export NODE_PATH=${RETRO_CACHE:-$HOME/.cache/retro}/npm/node_modules${NODE_PATH:+:$NODE_PATH}
missing=
command -v curl >/dev/null || missing="no curl"
[ -x "$browser" ] || missing="${missing:+$missing, }no $browser"
{ command -v node >/dev/null && node -e 'require.resolve("puppeteer-core")' 2>/dev/null; } ||
    missing="${missing:+$missing, }no puppeteer-core under NODE_PATH=$NODE_PATH"
if [ -n "$missing" ]; then
    [ -z "${RETRO_REQUIRE_BROWSER:-}" ] || fail "$missing (RETRO_REQUIRE_BROWSER is set; bash scripts/setup.sh --tests)"
    echo "skipped: $missing (bash scripts/setup.sh --tests installs them)"
    exit 0
fi
t0=$(date +%s)

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -4 | xargs -I{} cp {} docs/
# one chunk: the sentence and markup that must show as text (and never run)
sentence="Agnes Ploughwright keeps the Vardo lighthouse and polishes its lens at dusk."
printf '%s\n<b>bold</b> <img src=x onerror=__xss=1>\n' "$sentence" > docs/lighthouse.txt
for i in $(seq 1 8); do echo "The tide pools of Skerrivoe hold violet anemones that close when the gulls cry."; done \
    > tidepool.txt
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb > /dev/null
tiny_model kb rtr

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT
start() {   # start NAME ARGS...: a server on a fresh port, ready; its URL in $url. A port that
            # another process took first (tests run side by side) is given up for another.
    local name=$1 attempt i; shift
    for attempt in 1 2 3 4 5; do
        port=$(( 20000 + RANDOM % 20000 ))
        url=http://127.0.0.1:$port
        "$RETRO" serve --kb kb --port $port "$@" 2> "$name.err" &
        pids+=($!)
        for i in $(seq 1 200); do   # bound (it says so) before its /health counts: the port may be another's
            if ! kill -0 "${pids[-1]}" 2>/dev/null; then
                grep -q "Address already in use" "$name.err" && continue 2
                cat "$name.err" >&2
                fail "the server ($name) died"
            fi
            grep -q "listening on" "$name.err" && [ "$(curl -s -o /dev/null -w '%{http_code}' $url/health)" = 200 ] &&
                return 0
            sleep 0.1
        done
        fail "the server ($name) did not get ready"
    done
    fail "no free port in 5 tries"
}
start main --model rtr --api-key sekrit
main=$url
start bare --read-only   # beside the writer: no model, no key
bare=$url

# the page: open without the key, the HTML compiled in byte for byte, nothing from outside
for p in / /index.html; do
    curl -s -D head.txt -o page.html "$main$p"
    grep -q '^HTTP/1.1 200' head.txt || fail "GET $p: $(head -1 head.txt)"
    grep -qi '^Content-Type: text/html; charset=utf-8' head.txt || fail "GET $p: $(grep -i content-type head.txt)"
    cmp -s page.html "$SRC/cli/serve_page.html" || fail "GET $p is not cli/serve_page.html"
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$main/")" = 401 ] || fail "POST / is not refused without the key"
! grep -Eqi '(src|href)="?(https?:)?//|@import|url\(' page.html || fail "the page names an outside resource"
ok "GET / and /index.html: the page, open, text/html, the compiled-in copy of cli/serve_page.html"

timeout 150 node "$E2E_DIR/serve_page.js" "$main" "$bare" sekrit "$WORK/docs/lighthouse.txt" "$sentence" \
    "Who keeps the Vardo lighthouse?" "$WORK/tidepool.txt" "violet anemones of the Skerrivoe tide pools" \
    "$WORK/page.png" || fail "the page in Chromium (exit $?)"

sig=$(head -c 8 page.png | od -An -tx1 | tr -d ' \n')
[ "$sig" = 89504e470d0a1a0a ] || fail "the screenshot is not a PNG ($sig)"
[ "$(stat -c %s page.png)" -gt 10000 ] || fail "the screenshot is $(stat -c %s page.png) bytes"
[ -z "${RETRO_PAGE_SHOT:-}" ] || cp page.png "$RETRO_PAGE_SHOT"
ok "screenshot: a $(stat -c %s page.png)-byte PNG"

for p in "${pids[@]}"; do kill -TERM "$p"; wait "$p" || fail "serve did not stop cleanly"; done
pids=()
ok "the page's test took $(( $(date +%s) - t0 )) s"
