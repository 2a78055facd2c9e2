#!/usr/bin/env bash
# serve_docs.sh - documents over HTTP, driven with curl against a real `retro serve`:
# added as JSON and as uploaded files, found by the next search without a restart,
# listed page by page, read back, replaced, deleted; searches answered while a large
# ingest runs; kept across a restart; refused by a --read-only server, which runs
# beside a writer.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skipped: no curl"; exit 0; }

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -4 | xargs -I{} cp {} docs/
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb > /dev/null
start() { serve_start --kb kb "$@"; pid=$serve_pid; }
stop() { serve_pid=$pid; serve_stop; }
code() { curl -s -o body.json -w '%{http_code}' "$@"; }
post_json() { code -X POST -H 'Content-Type: application/json' "$@"; }
first_path() {   # first_path QUERY: the path of the best search result
    curl -s -X POST $url/v1/search -d "$(node -e 'console.log(JSON.stringify({query: process.argv[1], k: 1}))' "$1")" |
        node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(j.data.length ? j.data[0].path : "")'
}

start --max-body $((32 << 20))
fact="The lighthouse keeper of Vardo island is Agnes Ploughwright, who polishes the lens at dusk."
text=$(for i in $(seq 1 12); do printf '%s ' "$fact"; done)
body=$(node -e 'console.log(JSON.stringify({name: "notes/lighthouse.txt", text: process.argv[1]}))' "$text")
[ "$(post_json $url/v1/documents -d "$body")" = 200 ] || fail "POST a document: $(cat body.json)"
id=$(json_get data.0.id < body.json)
[ "$(json_get data.0.name < body.json)" = notes/lighthouse.txt ] || fail "name: $(cat body.json)"
[ "$(json_get added.new < body.json)" = 1 ] || fail "added: $(cat body.json)"
[ "$(json_get index.embedded < body.json)" -ge 1 ] || fail "not indexed: $(cat body.json)"
[ "$(first_path 'Who keeps the lighthouse of Vardo island?')" = notes/lighthouse.txt ] || fail "the next search does not find it"
ok "a document posted as JSON is indexed, and the next search finds it first"

# uploads: files as multipart/form-data, named by their file names (or the name field)
printf 'Glaciers carve deep valleys into the granite of the Kjolen mountains every winter.\n%.0s' $(seq 1 20) > glacier.txt
printf '<html><head><title>Oboe</title></head><body><p>The orchestra of Tromso tunes to the oboe before each symphony.</p></body></html>' > oboe.html
[ "$(code -F file=@glacier.txt -F file2=@oboe.html $url/v1/documents)" = 200 ] || fail "upload: $(cat body.json)"
[ "$(json_get data.1.title < body.json)" = Oboe ] || fail "the HTML page's title: $(cat body.json)"
[ "$(first_path 'granite valleys of the Kjolen mountains')" = glacier.txt ] || fail "an uploaded file not found"
[ "$(code -F file=@glacier.txt -F name=renamed.txt $url/v1/documents)" = 200 ] || fail "upload with a name"
[ "$(json_get data.0.name < body.json)" = renamed.txt ] || fail "the name field: $(cat body.json)"
[ "$(code -F other=x $url/v1/documents)" = 400 ] || fail "a form without a file"
ok "files uploaded as a form become documents (an HTML page with its title)"

# the same text again: unchanged; new text under the same name: replaced
[ "$(post_json $url/v1/documents -d "$body")" = 200 ] || fail "POST again"
[ "$(json_get added.unchanged < body.json)" = 1 ] || fail "not unchanged: $(cat body.json)"
[ "$(json_get data.0.id < body.json)" = "$id" ] || fail "the id changed"
[ "$(code $url/v1/documents/$id)" = 200 ] || fail "GET one"
node -e 'const j = JSON.parse(require("fs").readFileSync("body.json", "utf8")); if (j.text !== process.argv[1]) throw "text differs"' "$text"
ok "a document is read back with its text; posting it again changes nothing"

# paging: every document once, in id order
seen=0; after=0; pages=0
while :; do
    [ "$(code "$url/v1/documents?limit=2&after=$after")" = 200 ] || fail "a page: $(cat body.json)"
    n=$(node -e 'const j = JSON.parse(require("fs").readFileSync("body.json", "utf8")); console.log(j.data.length)')
    seen=$((seen + n)); pages=$((pages + 1))
    [ "$(json_get has_more < body.json)" = true ] || break
    after=$(json_get last_id < body.json)
done
[ "$seen" = 8 ] || fail "paging saw $seen documents, not 8"
[ "$pages" = 4 ] || fail "$pages pages of 2 for 8 documents"
[ "$(code "$url/v1/documents?limit=0")" = 400 ] || fail "limit 0"
[ "$(code "$url/v1/documents?after=x")" = 400 ] || fail "after x"
[ "$(code $url/v1/documents/99999)" = 404 ] || fail "an unknown id"
[ "$(code $url/v1/documents/12abc)" = 404 ] || fail "a bad id"
ok "documents listed in pages of 2 (8 documents, 4 pages); bad pages and ids refused"

# deletion: gone from the list and from search
[ "$(code -X DELETE $url/v1/documents/$id)" = 200 ] || fail "DELETE: $(cat body.json)"
[ "$(code $url/v1/documents/$id)" = 404 ] || fail "still there after DELETE"
[ "$(code -X DELETE $url/v1/documents/$id)" = 404 ] || fail "DELETE twice"
[ "$(first_path 'Who keeps the lighthouse of Vardo island?')" != notes/lighthouse.txt ] || fail "search still finds it"
ok "a deleted document is gone from the list and from search"

# searches go on while a large ingest runs (8 MB, tens of thousands of chunks)
node -e '
const words = "river mountain lantern harbour engine garden candle meadow thunder silver copper anchor".split(" ");
let s = "", x = 7;
while (s.length < 8e6) { x = (x * 1103515245 + 12345) % 2147483648; s += words[x % words.length] + (x % 13 ? " " : ".\n"); }
require("fs").writeFileSync("big.json", JSON.stringify({name: "big.txt", text: s}));'
t0=$(date +%s%N)
curl -s -o big.out -w '%{http_code}' -X POST --data-binary @big.json $url/v1/documents > big.code &
bigpid=$!
sleep 0.2
during=0
while kill -0 $bigpid 2>/dev/null; do   # curl alone: each search a few milliseconds
    curl -s -X POST $url/v1/search -d '{"query":"granite valleys of the Kjolen mountains","k":1}' > during.json
    grep -q '"path":"glacier.txt"' during.json || fail "a search during the ingest: $(head -c 300 during.json)"
    kill -0 $bigpid 2>/dev/null && during=$((during + 1))
done
wait $bigpid
[ "$(cat big.code)" = 200 ] || fail "the large POST: $(cat big.out)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$during" -ge 3 ] || fail "only $during searches answered during a ${ms} ms ingest"
ok "$during searches answered while an 8 MB document was ingested and indexed (${ms} ms)"

# a restart keeps everything; a second server with --read-only reads beside a writer
stop
start
[ "$(first_path 'granite valleys of the Kjolen mountains')" = glacier.txt ] || fail "lost across a restart"
old_port=$port old_pid=$pid
"$RETRO" serve --kb kb --port $((port + 1)) 2> second.err &
p2=$!
wait $p2 && fail "a second writer started"
grep -q "read-only" second.err || fail "the busy message does not say what to do: $(cat second.err)"
pid=
start --read-only
[ "$(first_path 'granite valleys of the Kjolen mountains')" = glacier.txt ] || fail "the read-only server's search"
[ "$(post_json $url/v1/documents -d "$body")" = 403 ] || fail "a read-only server accepted a document"
[ "$(code -X DELETE $url/v1/documents/1)" = 403 ] || fail "a read-only server accepted a delete"
[ "$(code $url/v1/documents?limit=1)" = 200 ] || fail "a read-only server's list"
stop
pid=$old_pid port=$old_port url=http://127.0.0.1:$old_port
stop
ok "documents kept across a restart; a second writer is refused; a --read-only server reads beside the writer"
