#!/usr/bin/env bash
# serve_cli.sh - `retro serve` on loopback, driven with curl: health, models,
# search with sources, completions (whole and streamed as server-sent events,
# with the sources of each retrieval), an API key, request limits, JSON errors
# for bad requests, Prometheus metrics, and a clean stop on SIGTERM.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skipped: no curl"; exit 0; }

sotu_kb 8
tiny_model kb rtr
serve_start --kb kb --model rtr --api-key sekrit --max-body 4096
pid=$serve_pid
[ "$(curl -s $url/health)" = '{"status":"ok"}' ] || fail "health"
auth=(-H "Authorization: Bearer sekrit")
code() { curl -s -o body.json -w '%{http_code}' "$@"; }
[ "$(code $url/v1/models)" = 401 ] || fail "no key: not refused"
[ "$(code -H 'Authorization: Bearer wrong' $url/v1/models)" = 401 ] || fail "a wrong key: not refused"
[ "$(code "${auth[@]}" $url/v1/models)" = 200 ] || fail "models"
[ "$(json_get data.0.id < body.json)" = rtr ] || fail "models: $(cat body.json)"
ok "health open, the API key required and compared, models listed"

# search: sources with byte spans; the text is the document's bytes there
first=$(ls docs | head -1)
q=$(head -c 300 "docs/$first" | tail -c 200)
curl -s "${auth[@]}" -X POST $url/v1/search -d "$(node -e 'console.log(JSON.stringify({query: process.argv[1], k: 3, continuation: true}))' "$q")" > s.json
node -e '
const fs = require("fs"), j = JSON.parse(fs.readFileSync("s.json", "utf8"));
if (j.data.length !== 3) throw "results: " + j.data.length;
const h = j.data[0];
if (!h.path.endsWith(process.argv[1])) throw "first source: " + h.path;
const text = fs.readFileSync(h.path);
if (text.slice(h.byte_start, h.byte_end).toString() !== h.text) throw "the text is not its byte span";
if (typeof h.continuation !== "string") throw "no continuation";' "$first"
ok "search: the passage's own document first, its text at its byte span"

# completions: whole, with usage and the sources of each retrieval
curl -s "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"The economy and jobs","max_tokens":70,"temperature":0}' > c.json
node -e '
const j = JSON.parse(require("fs").readFileSync("c.json", "utf8"));
if (j.object !== "text_completion" || typeof j.choices[0].text !== "string") throw "shape: " + JSON.stringify(j).slice(0, 200);
if (j.usage.completion_tokens !== 70 || j.choices[0].finish_reason !== "length") throw "usage: " + JSON.stringify(j.usage);
if (j.retro.retrievals.length < 1 || !j.retro.retrievals[0].sources[0].path.includes("docs/")) throw "no sources";'
"$RETRO" generate rtr "The economy and jobs" --kb kb -n 70 --temperature 0 --json > g.json
[ "$(node -e 'console.log(JSON.parse(require("fs").readFileSync("c.json","utf8")).choices[0].text)')" = "$(json_get text < g.json)" ] ||
    fail "the server's greedy completion differs from retro generate's"
# streamed: events that add up to the same text, the sources, then [DONE]
curl -sN "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"The economy and jobs","max_tokens":70,"temperature":0,"stream":true}' > st.txt
[ "$(tail -2 st.txt | head -1)" = "data: [DONE]" ] || fail "no [DONE]: $(tail -3 st.txt)"
node -e '
const fs = require("fs");
const ev = fs.readFileSync("st.txt", "utf8").split("\n\n").filter(e => e.startsWith("data: {")).map(e => JSON.parse(e.slice(6)));
const text = ev.map(e => e.choices[0].text).join("");
const whole = JSON.parse(fs.readFileSync("c.json", "utf8")).choices[0].text;
if (text !== whole) throw "streamed text differs";
if (ev[ev.length - 1].choices[0].finish_reason !== "length" || !ev[ev.length - 1].retro.retrievals.length) throw "last event";'
ok "completions: the same text as retro generate, whole and streamed, with the sources of each retrieval"

# logprobs, in OpenAI's two shapes: greedy picks the likeliest; the tokens are the text
curl -s "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"The economy and jobs","max_tokens":20,"temperature":0,"logprobs":3}' > lp.json
curl -s "${auth[@]}" -X POST $url/v1/chat/completions \
    -d '{"messages":[{"role":"user","content":"jobs?"}],"max_tokens":10,"temperature":0,"logprobs":true,"top_logprobs":2}' > lpc.json
node -e '
const fs = require("fs"), j = JSON.parse(fs.readFileSync("lp.json", "utf8")), c = JSON.parse(fs.readFileSync("lpc.json", "utf8"));
const lp = j.choices[0].logprobs, text = j.choices[0].text;
if (lp.tokens.length !== 20 || lp.tokens.join("") !== text) throw "tokens: " + JSON.stringify(lp.tokens);
for (let i = 0; i < 20; i++) {
    const top = Object.values(lp.top_logprobs[i]);
    if (!(lp.token_logprobs[i] <= 0) || top.length < 1 || top.length > 3) throw "token " + i;
    if (Math.abs(Math.max(...top) - lp.token_logprobs[i]) > 1e-5) throw "greedy is not the likeliest at " + i;
    if (i && lp.text_offset[i] !== lp.text_offset[i - 1] + Buffer.byteLength(lp.tokens[i - 1])) throw "offsets";
}
const cl = c.choices[0].logprobs.content;
if (!cl.length || cl.some(t => t.top_logprobs.length !== 2 || t.logprob > 0)) throw "chat logprobs";
if (Buffer.concat(cl.map(t => Buffer.from(t.bytes))).toString() !== c.choices[0].message.content) throw "chat bytes";'
[ "$(code "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"x","logprobs":9}')" = 400 ] || fail "logprobs 9"
ok "logprobs: token log probabilities and the likeliest alternatives, in the completions and chat shapes"

# chat: messages through the documented template, the reply as a message, whole and streamed
chat='{"messages":[{"role":"system","content":"Answer from the addresses."},{"role":"user","content":"What about jobs?"}],"max_tokens":40,"temperature":0}'
curl -s "${auth[@]}" -X POST $url/v1/chat/completions -d "$chat" > ch.json
"$RETRO" generate rtr "$(printf 'Answer from the addresses.\n\nUser: What about jobs?\nAssistant:')" --kb kb -n 40 --temperature 0 \
    --stop "$(printf '\nUser:')" --json > chg.json
curl -sN "${auth[@]}" -X POST $url/v1/chat/completions -d "${chat%\}},\"stream\":true}" > chs.txt
node -e '
const fs = require("fs"), j = JSON.parse(fs.readFileSync("ch.json", "utf8")), g = JSON.parse(fs.readFileSync("chg.json", "utf8"));
if (j.object !== "chat.completion" || j.choices[0].message.role !== "assistant") throw "shape: " + JSON.stringify(j).slice(0, 200);
if (j.choices[0].message.content !== g.text) throw "reply differs from retro generate: " + JSON.stringify([j.choices[0].message.content, g.text]);
const ev = fs.readFileSync("chs.txt", "utf8").split("\n\n").filter(e => e.startsWith("data: {")).map(e => JSON.parse(e.slice(6)));
if (ev[0].object !== "chat.completion.chunk" || ev[0].choices[0].delta.role !== "assistant") throw "first chunk";
if (ev.map(e => e.choices[0].delta.content || "").join("") !== g.text) throw "streamed reply differs";'
[ "$(code "${auth[@]}" -X POST $url/v1/chat/completions -d '{"messages":[{"role":"pirate","content":"x"}]}')" = 400 ] ||
    fail "an unknown role"
ok "chat completions: the template's reply, whole and streamed"

# embeddings: the knowledge base's embedder, as `retro embed` gives it; floats or base64
curl -s "${auth[@]}" -X POST $url/v1/embeddings -d '{"input":["hello world","the economy"]}' > e.json
curl -s "${auth[@]}" -X POST $url/v1/embeddings -d '{"input":"hello world","encoding_format":"base64"}' > e64.json
"$RETRO" embed kb "hello world" > ref_e.json
node -e '
const fs = require("fs"), j = JSON.parse(fs.readFileSync("e.json", "utf8")), b = JSON.parse(fs.readFileSync("e64.json", "utf8"));
const ref = JSON.parse(fs.readFileSync("ref_e.json", "utf8").trim()).embedding;
if (j.data.length !== 2 || j.data[1].index !== 1) throw "data: " + j.data.length;
const e = j.data[0].embedding;
if (e.length !== ref.length) throw "dimension " + e.length + " vs " + ref.length;
for (let i = 0; i < e.length; i++) if (Math.abs(e[i] - ref[i]) > 1e-6) throw "value " + i;
const raw = Buffer.from(b.data[0].embedding, "base64");
if (raw.length !== 4 * e.length) throw "base64 length";
for (let i = 0; i < e.length; i++) if (Math.abs(raw.readFloatLE(4 * i) - e[i]) > 1e-6) throw "base64 value " + i;'
[ "$(code "${auth[@]}" -X POST $url/v1/embeddings -d '{"input":[1,2]}')" = 400 ] || fail "embeddings of numbers"
ok "embeddings: the knowledge base's embedder, as floats and as base64"

# bad requests: JSON errors, never a crash
[ "$(code "${auth[@]}" -X POST $url/v1/search -d '{not json')" = 400 ] || fail "bad JSON"
[ "$(json_get error.type < body.json)" = invalid_request_error ] || fail "error body: $(cat body.json)"
[ "$(code "${auth[@]}" -X POST $url/v1/search -d '{"query":7}')" = 400 ] || fail "wrong type"
[ "$(code "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"x","max_tokens":0}')" = 400 ] || fail "max_tokens 0"
big=$(head -c 6000 /dev/zero | tr '\0' a)
[ "$(code "${auth[@]}" -X POST $url/v1/search -d "{\"query\":\"$big\"}")" = 413 ] || fail "a body over --max-body"
[ "$(code "${auth[@]}" $url/v1/nothing)" = 404 ] || fail "404"
[ "$(code "${auth[@]}" $url/v1/search)" = 405 ] || fail "GET of a POST endpoint"
nested=$(printf '%.0s[' $(seq 1 3000))
[ "$(code "${auth[@]}" -X POST $url/v1/search -d "$nested")" = 400 ] || fail "deep JSON"
kill -0 $pid || fail "the server died on bad requests"
ok "bad requests get a JSON error and a 4xx"

# a client that disconnects cancels its generation: the engine is free again at once
curl -sN --max-time 1 "${auth[@]}" -X POST $url/v1/completions -d '{"prompt":"x","max_tokens":100000,"stream":true,"ignore_eos":true}' \
    > /dev/null 2>&1 || true
t0=$(date +%s%N)
[ "$(code --max-time 20 "${auth[@]}" -X POST $url/v1/search -d '{"query":"jobs","k":1}')" = 200 ] ||
    fail "no search after a cancelled stream"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 10000 ] || fail "the search waited ${ms} ms: the generation went on after its client left"
ok "a client that disconnects cancels its generation (the next request answered in ${ms} ms)"

curl -s "${auth[@]}" $url/metrics > m.txt
# a whole one, a stream, one with logprobs, two refused (max_tokens 0, logprobs 9), a cancelled stream
grep -q '^retro_requests_total{endpoint="completions"} 6$' m.txt || fail "metrics: $(grep requests m.txt)"
grep -q '^retro_errors_total{endpoint="search"} [1-9]' m.txt || fail "no errors counted"
tok=$(sed -n 's/^retro_tokens_generated_total //p' m.txt)
[ "$tok" -ge 140 ] || fail "tokens: $tok"   # 70 + 70 for the completions, and the chats
grep -q '^retro_request_seconds_bucket{endpoint="search",le="+Inf"} [1-9]' m.txt || fail "latency histogram"
grep -q '^retro_chunks [1-9]' m.txt || fail "chunks gauge"
ok "metrics: requests, errors, latency, tokens, chunks"

serve_stop
ok "SIGTERM stops it cleanly"
