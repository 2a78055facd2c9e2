#!/usr/bin/env bash
# ask_reader.sh - `retro ask --reader URL` with another `retro serve` as the reader: the reader's
# answer is what that server gives for the same request made directly with curl (chat and
# completions, greedy); the request holds the numbered passages, the question, the model its
# /v1/models lists (or --reader-model), max_tokens and temperature from -n and --temperature, and
# the key of $RETRO_READER_KEY; the sources name the file with the fact first; an unreachable
# reader, an error status and a malformed response each give a one-line error and exit code 1.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skipped: no curl"; exit 0; }

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -8 | xargs -I{} cp {} docs/
printf 'Harbour notes.\n\nThe keeper of the Skerryvore lighthouse in 1931 was Agnes Ploughwright, who kept its lamp burning through the great storm of that winter.\n' > docs/skerryvore.txt
"$RETRO" index add kb docs --quiet > /dev/null
"$RETRO" index build kb > /dev/null
tiny_model kb rtr
serve_start --kb kb --model rtr --read-only   # lib.sh: a free port, ready; port, url
pid=$serve_pid
# a recording proxy in front of it: every request is written to req-N.json and passed on;
# /bad/... answers a malformed completion instead
cat > proxy.js <<'EOF'
const http = require("http"), fs = require("fs");
const target = +process.argv[2];
let n = 0;
const srv = http.createServer((req, res) => {
    const parts = [];
    req.on("data", d => parts.push(d));
    req.on("end", () => {
        const body = Buffer.concat(parts).toString();
        fs.writeFileSync(`req-${n++}.json`, JSON.stringify({method: req.method, url: req.url, headers: req.headers, body}));
        if (req.url.startsWith("/bad/")) {
            res.writeHead(200, {"Content-Type": "application/json"});
            return res.end('{"object":"chat.completion","choices":[]}');
        }
        const up = http.request({host: "127.0.0.1", port: target, path: req.url, method: req.method,
                                 headers: {"content-type": "application/json"}}, r => {
            res.writeHead(r.statusCode, r.headers);
            r.pipe(res);
        });
        up.on("error", e => { res.writeHead(502); res.end(String(e)); });
        up.end(body);
    });
});
srv.listen(0, "127.0.0.1", () => fs.writeFileSync("proxy.port", String(srv.address().port)));
EOF
node proxy.js $port &
ppid=$!
trap 'kill $pid $ppid 2>/dev/null; rm -rf "$WORK"' EXIT
for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' $url/health)" = 200 ] && [ -s proxy.port ] && break
    kill -0 $pid 2>/dev/null || { cat serve.err >&2; fail "the server died"; }
    sleep 0.1
done
proxy=http://127.0.0.1:$(cat proxy.port)
q="Who was the keeper of the Skerryvore lighthouse in 1931?"
# the requests the proxy recorded since the last `rm -f req-*.json`, oldest first
reqs='const reqs = require("fs").readdirSync(".").filter(f => /^req-\d+\.json$/.test(f)).sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4))).map(f => JSON.parse(require("fs").readFileSync(f, "utf8")));'

# chat (the default): the answer, labelled, with retro's sources; the fact's file first
"$RETRO" ask rtr "$q" --kb kb --reader $url --json -n 40 > a.json
node -e '
const j = JSON.parse(require("fs").readFileSync("a.json", "utf8"));
if (j.generated_by !== process.argv[1]) throw "generated_by: " + j.generated_by;
if (typeof j.generated !== "string" || !j.generated.length) throw "no answer";
if (!j.sources[0].path.endsWith("/skerryvore.txt")) throw "first source: " + j.sources[0].path;
if (!j.sources.every(s => s.in_prompt)) throw "a passage was not given to the reader";
if (!j.quotes[0].text.includes("Agnes Ploughwright")) throw "quote: " + j.quotes[0].text;' "$url"
ok "ask --reader --json: the reader's answer, generated_by its URL, the fact's file first"

# the same through the proxy: the request it sent, and that request made directly with curl
rm -f req-*.json
"$RETRO" ask rtr "$q" --kb kb --reader $proxy --json -n 40 > b.json
[ "$(ls req-*.json | wc -l)" = 2 ] || fail "expected a model list and one completion: $(ls req-*.json)"
node -e "$reqs"'
const fs = require("fs"), a = JSON.parse(fs.readFileSync("a.json", "utf8")), b = JSON.parse(fs.readFileSync("b.json", "utf8"));
const [list, r] = reqs;
if (list.method !== "GET" || list.url !== "/v1/models") throw "first request: " + list.method + " " + list.url;
if (r.method !== "POST" || r.url !== "/v1/chat/completions") throw "second request: " + r.method + " " + r.url;
if (r.headers.authorization !== undefined) throw "an Authorization header without RETRO_READER_KEY";
const body = JSON.parse(r.body);
if (body.model !== "rtr" || body.max_tokens !== 40 || body.temperature !== 0 || body.stream !== false)
    throw "fields: " + r.body.slice(0, 200);
const [sys, user] = body.messages;
if (sys.role !== "system" || !/only the numbered passages/.test(sys.content) || user.role !== "user") throw "roles";
if (!user.content.startsWith("Passages:\n\n[1] " + a.sources[0].text)) throw "passage 1: " + user.content.slice(0, 120);
for (let i = 2; i <= a.sources.length; i++) if (!user.content.includes("\n\n[" + i + "] ")) throw "no passage " + i;
if (!user.content.endsWith("\n\nQuestion: " + process.argv[1])) throw "question: " + user.content.slice(-100);
if (b.generated !== a.generated) throw "the answer through the proxy differs";
fs.writeFileSync("chat.json", r.body);' "$q"
curl -s -X POST $url/v1/chat/completions -H 'Content-Type: application/json' --data-binary @chat.json > direct.json
[ "$(json_get choices.0.message.content < direct.json)" = "$(json_get generated < a.json)" ] ||
    fail "the reader's answer differs from the server's answer to the same request: $(head -c 300 direct.json)"
ok "the request: the model of /v1/models, numbered passages, the question, -n, temperature 0; its answer equals curl's"

# completions, a named model, the key from the environment
rm -f req-*.json
RETRO_READER_KEY=sekrit "$RETRO" ask rtr "$q" --kb kb --reader $proxy/v1 --reader-completions --reader-model big-one \
    -n 24 --json > c.json
[ "$(ls req-*.json | wc -l)" = 1 ] || fail "--reader-model: the model list was asked for"
node -e "$reqs"'
const fs = require("fs"), r = reqs[0], body = JSON.parse(r.body);
if (r.url !== "/v1/completions" || r.headers.authorization !== "Bearer sekrit") throw "request: " + r.url + " " + r.headers.authorization;
if (body.model !== "big-one" || body.max_tokens !== 24 || body.messages !== undefined) throw "fields: " + r.body.slice(0, 200);
if (!body.prompt.includes("\n\nPassages:\n\n[1] ") || !body.prompt.endsWith("\n\nQuestion: " + process.argv[1] + "\nAnswer:"))
    throw "prompt: " + body.prompt.slice(-120);
fs.writeFileSync("cmpl.json", r.body);' "$q"
curl -s -X POST $url/v1/completions -H 'Content-Type: application/json' --data-binary @cmpl.json > directc.json
[ "$(json_get choices.0.text < directc.json)" = "$(json_get generated < c.json)" ] ||
    fail "--reader-completions: the answer differs from the server's: $(head -c 300 directc.json)"
[ "$(json_get tokens < c.json)" = 24 ] || fail "tokens: the reader's usage"
ok "--reader-completions: a prompt ending Answer:, --reader-model, the bearer key of RETRO_READER_KEY; curl's answer"

# the text output: the reader named, the sources after it; MODEL may be left out
"$RETRO" ask --kb kb "$q" --reader $url -n 16 > t.txt
grep -q "^What the reader at $url writes from them:" t.txt || fail "text: no reader label: $(cat t.txt)"
grep -q "^  1\. .*/skerryvore.txt" t.txt || fail "text: sources"
! grep -q -- "--reader URL" t.txt || fail "text: the --reader hint with a reader"
"$RETRO" ask rtr --kb kb "$q" -n 8 > local.txt
[ "$(grep -c -- "--reader URL" local.txt)" = 1 ] || fail "text: no one-line --reader hint without a reader"
"$RETRO" ask rtr --kb kb "$q" -n 8 --json > local.json
! grep -q -- "--reader" local.json || fail "the hint is in --json"
[ "$(json_get generated_by < local.json)" = model ] || fail "generated_by without a reader"
ok "text: the reader's answer labelled with its URL; without one, a one-line hint (not in --json)"

# failures: one line naming the URL, exit code 1
closed=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
expect_fail 1 "reader http://127.0.0.1:$closed/v1/chat/completions: cannot connect" \
    "$RETRO" ask rtr "$q" --kb kb --reader http://127.0.0.1:$closed --json
[ ! -s out.txt ] || fail "output despite the failure"
expect_fail 1 "reader $url/nothing/v1/chat/completions: HTTP 404: " "$RETRO" ask rtr "$q" --kb kb --reader $url/nothing
expect_fail 1 "reader $proxy/bad/v1/chat/completions: the response's \"choices\" array is empty" \
    "$RETRO" ask rtr "$q" --kb kb --reader $proxy/bad --reader-model m
expect_fail 2 "reader-model needs --reader" "$RETRO" ask rtr "$q" --kb kb --reader-model m
ok "an unreachable reader, an error status, a malformed response: one line naming the URL, exit 1"

# the server's /v1/ask: a server without a model answers through --reader, one with a model from it;
# each gives what `retro ask` gives for the same question
back=$url
serve_start --kb kb --read-only --reader $back   # another free port, ready
front=$serve_pid front_port=$port url=$back
trap 'kill $pid $ppid $front 2>/dev/null; rm -rf "$WORK"' EXIT
body=$(node -e 'console.log(JSON.stringify({question: process.argv[1], max_tokens: 40}))' "$q")
curl -s -X POST http://127.0.0.1:$front_port/v1/ask -d "$body" > fa.json
curl -s -X POST $url/v1/ask -d "$body" > ma.json
"$RETRO" ask rtr "$q" --kb kb -n 40 --json > la.json
node -e '
const fs = require("fs"), rd = f => JSON.parse(fs.readFileSync(f, "utf8"));
const fa = rd("fa.json"), ma = rd("ma.json"), a = rd("a.json"), la = rd("la.json");
if (fa.generated_by !== process.argv[1]) throw "front: generated_by " + fa.generated_by;
if (fa.generated !== a.generated) throw "front: not what retro ask --reader gives: " + JSON.stringify([fa.generated, a.generated]);
if (!fa.sources[0].path.endsWith("/skerryvore.txt") || !fa.answer.includes("Agnes Ploughwright")) throw "front: sources or answer";
if (ma.generated_by !== "model" || ma.generated !== la.generated) throw "model: " + JSON.stringify([ma.generated, la.generated]);
if (JSON.stringify(ma.quotes.map(q => q.text)) !== JSON.stringify(la.quotes.map(q => q.text))) throw "model: quotes differ";' "$url"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$front_port/v1/ask -d '{"question":""}')" = 400 ] ||
    fail "an empty question"
kill -TERM $front; wait $front || fail "the front server did not stop cleanly"
ok "/v1/ask: through the server's --reader as retro ask --reader answers; from its model as retro ask does"
