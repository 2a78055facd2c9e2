#!/usr/bin/env bash
# serve_openai.sh - the official `openai` npm client (pinned in datasets/fetch.sh) against `retro serve`
# on loopback: completions (text, usage, finish_reason), chat completions (the message's role and
# content), both streamed (the pieces add up to the greedy text), embeddings of a string and of an
# array (dimension, float values; the client's default base64 decoded, explicit float, explicit
# base64), and a wrong key as the client's AuthenticationError (401).
# Needs the packages of `bash datasets/fetch.sh` in $RETRO_CACHE; fails without.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skipped: no curl"; exit 0; }
cache=${RETRO_CACHE:-$HOME/.cache/retro}
nm=$cache/npm/node_modules
[ -e "$nm/openai/package.json" ] ||
    fail "$nm/openai is missing: run 'bash datasets/fetch.sh' (RETRO_CACHE=$cache)"

sotu_kb 8
tiny_model kb rtr
"$RETRO" embed kb "hello world" > ref_e.json
serve_start --kb kb --model rtr --api-key sekrit --read-only

cat > client.js <<'EOF'
const OpenAI = require("openai");
const fs = require("fs");
const base = process.argv[2];
const client = new OpenAI({baseURL: base + "/v1", apiKey: "sekrit", maxRetries: 0, timeout: 30000});
const check = (cond, what) => { if (!cond) throw new Error(what); };
const ok = what => console.log("ok - openai " + process.argv[3] + ": " + what);

(async () => {
    // completions, whole and streamed
    const req = {model: "rtr", prompt: "The economy and jobs", max_tokens: 30, temperature: 0};
    const c = await client.completions.create(req);
    check(c.object === "text_completion" && Array.isArray(c.choices) && c.choices.length === 1, "completion shape: " + JSON.stringify(c).slice(0, 200));
    check(typeof c.choices[0].text === "string" && c.choices[0].text.length > 0, "completion text");
    check(c.choices[0].finish_reason === "length", "finish_reason " + c.choices[0].finish_reason);
    check(c.usage.completion_tokens === 30 && c.usage.prompt_tokens > 0 &&
          c.usage.total_tokens === c.usage.prompt_tokens + 30, "usage " + JSON.stringify(c.usage));
    let text = "", last = null, n = 0;
    for await (const ev of await client.completions.create({...req, stream: true})) {
        text += ev.choices[0].text;
        last = ev;
        n++;
    }
    check(n > 1, "one event only");
    check(text === c.choices[0].text, "streamed completion differs: " + JSON.stringify([text, c.choices[0].text]));
    check(last.choices[0].finish_reason === "length", "last event's finish_reason");
    ok("completions.create: text, usage, finish_reason; streamed, the same text");

    // chat, whole and streamed
    const chat = {model: "rtr", max_tokens: 20, temperature: 0,
                  messages: [{role: "system", content: "Answer from the addresses."}, {role: "user", content: "What about jobs?"}]};
    const r = await client.chat.completions.create(chat);
    check(r.object === "chat.completion", "chat object " + r.object);
    const m = r.choices[0].message;
    check(m.role === "assistant" && typeof m.content === "string", "message " + JSON.stringify(m));
    check(["length", "stop"].includes(r.choices[0].finish_reason), "chat finish_reason " + r.choices[0].finish_reason);
    let reply = "", role = null;
    for await (const ev of await client.chat.completions.create({...chat, stream: true})) {
        const d = ev.choices[0].delta;
        if (d.role) role = d.role;
        reply += d.content || "";
    }
    check(role === "assistant", "streamed role " + role);
    check(reply === m.content, "streamed reply differs: " + JSON.stringify([reply, m.content]));
    ok("chat.completions.create: role and content; streamed, the same reply");

    // embeddings: the client asks for base64 and decodes it unless told otherwise
    const ref = JSON.parse(fs.readFileSync("ref_e.json", "utf8").trim()).embedding;
    const same = (e, what) => {
        check(e.length === ref.length, what + ": dimension " + e.length + " vs " + ref.length);
        for (let i = 0; i < e.length; i++)
            check(typeof e[i] === "number" && Number.isFinite(e[i]) && Math.abs(e[i] - ref[i]) < 1e-6, what + ": value " + i);
    };
    const one = await client.embeddings.create({model: "retro-kb", input: "hello world"});
    check(one.object === "list" && one.data.length === 1 && one.data[0].index === 0, "embedding shape");
    same(one.data[0].embedding, "string (default base64)");
    const two = await client.embeddings.create({model: "retro-kb", input: ["the economy", "hello world"], encoding_format: "float"});
    check(two.data.length === 2 && two.data[0].index === 0 && two.data[1].index === 1, "array: indices");
    same(two.data[1].embedding, "array (float)");
    check(Math.abs(two.data[0].embedding.reduce((s, x) => s + x * x, 0) - 1) < 1e-4, "array: not unit length");
    const b64 = await client.embeddings.create({model: "retro-kb", input: ["hello world"], encoding_format: "base64"});
    check(typeof b64.data[0].embedding === "string", "base64: not a string");
    const raw = Buffer.from(b64.data[0].embedding, "base64");
    same(Array.from({length: raw.length / 4}, (_, i) => raw.readFloatLE(4 * i)), "explicit base64");
    ok("embeddings.create: a string, an array, float and base64, each the knowledge base's vector");

    // a wrong key: the client's AuthenticationError
    const bad = new OpenAI({baseURL: base + "/v1", apiKey: "wrong", maxRetries: 0});
    let err = null;
    try { await bad.completions.create(req); } catch (e) { err = e; }
    check(err instanceof OpenAI.AuthenticationError && err.status === 401, "wrong key: " + (err && err.constructor.name) + " " + (err && err.status));
    check(typeof err.message === "string" && err.message.length > 0, "no error message");
    ok("a wrong key: AuthenticationError, 401 (" + err.message + ")");
})().catch(e => { console.error("FAIL: " + (e && e.stack || e)); process.exit(1); });
EOF
NODE_PATH=$nm node client.js $url "$(node -p 'require(process.argv[1]).version' "$nm/openai/package.json")" || { tail -5 serve.err >&2; fail "the openai client"; }
kill -0 $serve_pid || fail "the server died"
