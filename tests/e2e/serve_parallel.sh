#!/usr/bin/env bash
# serve_parallel.sh - `retro serve --parallel N`: concurrent completions decoded together
# in one batched step each give the text `retro generate` gives alone; a full queue
# answers 429 with Retry-After; a waiting client that leaves is dropped; searches are
# answered while slots generate; the gauges in /metrics.
source "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skipped: no curl"; exit 0; }

sotu_kb 8
tiny_model kb rtr
start() { serve_start --kb kb --model rtr --read-only "$@"; pid=$serve_pid; }
stop() { serve_pid=$pid; serve_stop; }

# four greedy completions at once, each crossing a retrieval: each is what retro generate gives alone
start --parallel 4
prompts=("The economy and jobs" "Our armed forces" "Education in America" "The budget deficit")
for i in 0 1 2 3; do
    curl -s -X POST $url/v1/completions \
        -d "{\"prompt\":\"${prompts[$i]}\",\"max_tokens\":80,\"temperature\":0}" > par$i.json &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
for i in 0 1 2 3; do
    "$RETRO" generate rtr "${prompts[$i]}" --kb kb -n 80 --temperature 0 --json > gen$i.json
    node -e '
const fs = require("fs"), i = process.argv[1];
const s = JSON.parse(fs.readFileSync("par" + i + ".json", "utf8")), g = JSON.parse(fs.readFileSync("gen" + i + ".json", "utf8"));
if (s.choices[0].text !== g.text) throw "prompt " + i + ": the batched text differs from retro generate:\n" + JSON.stringify([s.choices[0].text, g.text]);
if (s.usage.completion_tokens !== 80 || s.retro.retrievals.length < 1) throw "prompt " + i + ": " + JSON.stringify(s.usage);' $i
done
ok "4 completions decoded together: each the text retro generate gives alone, with its retrievals"

# streams at once, and a search between their steps
for i in 0 1 2; do
    curl -sN -X POST $url/v1/completions -d "{\"prompt\":\"${prompts[$i]}\",\"max_tokens\":300,\"temperature\":0,\"stream\":true}" > st$i.txt &
done
sleep 0.3
t0=$(date +%s%N)
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST $url/v1/search -d '{"query":"jobs","k":1}')" = 200 ] || fail "search during generation"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
curl -s $url/metrics > m.txt
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
for i in 0 1 2; do [ "$(tail -2 st$i.txt | head -1)" = "data: [DONE]" ] || fail "stream $i did not finish"; done
grep -q '^retro_slots 4$' m.txt || fail "slots gauge: $(grep slots m.txt)"
ok "3 streams decoded together; a search between their steps answered in ${ms} ms"
stop

# one slot and a queue of one: the third request gets 429 with Retry-After
start --parallel 1 --queue 1
curl -sN --max-time 4 -X POST $url/v1/completions -d '{"prompt":"x","max_tokens":100000,"stream":true,"ignore_eos":true}' > /dev/null 2>&1 &
long=$!
sleep 0.5
curl -s -X POST $url/v1/completions -d '{"prompt":"Our armed forces","max_tokens":8,"temperature":0}' > queued.json &
queued=$!
sleep 0.3
code=$(curl -s -D hdr.txt -o busy.json -w '%{http_code}' -X POST $url/v1/completions -d '{"prompt":"y","max_tokens":4}')
[ "$code" = 429 ] || fail "a full queue answered $code"
grep -qi '^Retry-After: 1' hdr.txt || fail "no Retry-After: $(cat hdr.txt)"
[ "$(json_get error.type < busy.json)" = rate_limit_error ] || fail "429 body: $(cat busy.json)"
curl -s $url/metrics > m2.txt
grep -q '^retro_queue_depth 1$' m2.txt || fail "queue depth: $(grep queue m2.txt)"
grep -q '^retro_slots_busy 1$' m2.txt || fail "busy slots: $(grep busy m2.txt)"
grep -q '^retro_rejected_total 1$' m2.txt || fail "rejected: $(grep rejected m2.txt)"
wait $long || true   # its client leaves after 4 s: the slot frees, the queued one runs
wait $queued
[ "$(json_get usage.completion_tokens < queued.json)" = 8 ] || fail "the queued completion: $(cat queued.json)"
ok "a full queue gets 429 with Retry-After; the queued completion runs once the slot frees"

# clients that leave, one running and one queued: the slot frees for the next
curl -sN --max-time 3 -X POST $url/v1/completions -d '{"prompt":"x","max_tokens":100000,"stream":true,"ignore_eos":true}' > /dev/null 2>&1 &
long=$!
sleep 0.5
curl -sN --max-time 1 -X POST $url/v1/completions -d '{"prompt":"z","max_tokens":100000,"stream":true,"ignore_eos":true}' > /dev/null 2>&1 || true
wait $long || true
t0=$(date +%s%N)
for try in $(seq 1 50); do   # as a client does: after a 429, again (Retry-After)
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -X POST $url/v1/completions -d '{"prompt":"a","max_tokens":4}')
    [ "$code" = 429 ] || break
    sleep 0.2
done
[ "$code" = 200 ] || fail "no completion after the clients left: $code"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 5000 ] || fail "the next completion waited ${ms} ms: a dropped client kept generating"
stop
ok "clients that leave, running or queued, free the slot (the next completion answered in ${ms} ms)"
