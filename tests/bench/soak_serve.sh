#!/usr/bin/env bash
# soak_serve.sh - `retro serve` under a mixed load for SECONDS (default 600): searches (hey,
# 2 clients), completions (2 clients, whole and streamed, in 4 slots) and ingest (documents
# posted one after another, every fifth an earlier one deleted), all at once. At the end:
# errors of every kind, documents lost or left over (the list against what was posted and
# deleted, and a search for each survivor's text), and the server's resident
# memory every 10 s (flat after the first minute: the figure compares the last sample with
# the one at 60 s).
#
#   bash tests/bench/soak_serve.sh [BUILD_DIR] [SECONDS]      (needs hey: scripts/setup.sh --bench)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build/release}" && pwd)
secs=${2:-600}
retro=$build/retro
command -v hey >/dev/null || { echo "soak_serve: hey missing (bash scripts/setup.sh --bench)" >&2; exit 1; }
w=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$w"' EXIT
cd "$w"
mkdir docs
ls "$src"/datasets/sotu/*.txt | head -20 | xargs -I{} cp {} docs/
"$retro" index add kb docs --quiet > /dev/null
"$retro" index build kb > /dev/null
"$retro" train kb -o m --steps 2 --context 128 --width 64 --layers 2 --heads 2 --batch 2 --eval-seqs 1 --quiet \
    > /dev/null 2>&1
port=$(( 20000 + RANDOM % 20000 ))
url=http://127.0.0.1:$port
"$retro" serve --kb kb --model m --port $port --parallel 4 2> serve.err &
pid=$!
for i in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' $url/health)" = 200 ] && break
    sleep 0.1
done
echo "machine: $(nproc) cores, $(date -u +%F); soak of ${secs} s"
end=$(( $(date +%s) + secs ))

( while [ "$(date +%s)" -lt "$end" ]; do   # resident memory every 10 s
      echo "$(( $(date +%s) - end + secs )) $(awk '/^VmRSS/ {print $2}' /proc/$pid/status)" >> rss.txt
      sleep 10
  done ) &
printf '{"query": "the economy and the jobs of our people", "k": 5}' > body.json
hey -z ${secs}s -c 2 -q 20 -m POST -T application/json -D body.json $url/v1/search > hey.txt 2>&1 &
heypid=$!
for c in 1 2; do
    ( n=0 bad=0
      while [ "$(date +%s)" -lt "$end" ]; do
          s=$([ $((n % 2)) = 0 ] && echo true || echo false)
          code=$(curl -s -o /dev/null -w '%{http_code}' -X POST $url/v1/completions \
              -d "{\"prompt\":\"Client $c asks $n\",\"max_tokens\":64,\"stream\":$s,\"seed\":$n}")
          [ "$code" = 200 ] || bad=$((bad + 1))
          n=$((n + 1))
      done
      echo "$n $bad" > comp$c.txt ) &
done
( n=0 bad=0
  : > live.txt
  while [ "$(date +%s)" -lt "$end" ]; do
      body=$(printf '{"name":"soak/%05d.txt","text":"Soak document %d: the zyx%dq harbour of w%dk counts %d ferries."}' $n $n $n $n $n)
      code=$(curl -s -o post.json -w '%{http_code}' -X POST $url/v1/documents -d "$body")
      if [ "$code" = 200 ]; then
          echo "$n $(node -e 'console.log(JSON.parse(require("fs").readFileSync("post.json","utf8")).data[0].id)')" >> live.txt
      else bad=$((bad + 1)); fi
      if [ $((n % 5)) = 4 ]; then   # delete the oldest survivor
          read -r k id < live.txt
          code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE $url/v1/documents/$id)
          [ "$code" = 200 ] && sed -i 1d live.txt || bad=$((bad + 1))
      fi
      n=$((n + 1))
  done
  echo "$n $bad" > ingest.txt ) &
wait $heypid
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true

# what the server holds: every survivor, nothing deleted
after=0; listed=0
: > listed.txt
while :; do
    curl -s "$url/v1/documents?limit=1000&after=$after" > page.json
    node -e 'const j = JSON.parse(require("fs").readFileSync("page.json", "utf8"));
             for (const d of j.data) if (d.name.startsWith("soak/")) console.log(d.id);
             console.error(j.has_more ? j.last_id : "")' >> listed.txt 2> next.txt
    after=$(cat next.txt)
    [ -n "$after" ] || break
done
awk '{print $2}' live.txt | sort > want.txt
sort listed.txt > got.txt
lost=$(comm -23 want.txt got.txt | wc -l)
extra=$(comm -13 want.txt got.txt | wc -l)
found=0 total=0
while read -r k id; do   # each survivor found first by its text
    total=$((total + 1))
    curl -s -X POST $url/v1/search -d "$(printf '{"query":"Soak document %d: the zyx%dq harbour of w%dk counts %d ferries.","k":1}' $k $k $k $k)" |
        grep -q "\"path\":\"soak/$(printf %05d $k).txt\"" && found=$((found + 1))
done < live.txt
curl -s $url/metrics > metrics.txt
errors=$(awk '/^retro_errors_total/ {s += $2} END {print s}' metrics.txt)
http_bad=$(sed -n '/^Status code distribution/,/^$/p' hey.txt | grep -v '\[200\]' | grep -cE '\[[0-9]+\]' || true)
searches=$(sed -n '/^Status code distribution/,/^$/p' hey.txt | sed -n 's/.*\[200\][[:space:]]*\([0-9]*\).*/\1/p')
read -r c1 b1 < comp1.txt; read -r c2 b2 < comp2.txt; read -r ni bi < ingest.txt
rss60=$(awk '$1 >= 60 {print $2; exit}' rss.txt)
rssend=$(tail -1 rss.txt | awk '{print $2}')
rssmax=$(awk 'BEGIN {m = 0} {if ($2 > m) m = $2} END {print m}' rss.txt)
kill -TERM $pid; wait $pid; pid=
printf '| soak | figure |\n| --- | --- |\n'
printf '| searches answered (hey, 2 clients at 20/s) | %s, other statuses: %s |\n' "${searches:-0}" "$http_bad"
printf '| completions (64 tokens, whole and streamed) | %s, failed: %s |\n' $((c1 + c2)) $((b1 + b2))
printf '| documents posted / deleted | %s / %s, failed requests: %s |\n' "$ni" $((ni / 5)) "$bi"
printf '| documents lost / left over after delete | %s / %s |\n' "$lost" "$extra"
printf '| survivors found first by their text | %s of %s |\n' "$found" "$total"
printf '| errors counted by /metrics | %s |\n' "$errors"
printf '| resident memory at 60 s / at the end / most (KiB) | %s / %s / %s |\n' "$rss60" "$rssend" "$rssmax"
[ "$lost" = 0 ] && [ "$extra" = 0 ] && [ "$errors" = 0 ] && [ $((b1 + b2 + bi)) = 0 ] && [ "$found" = "$total" ]
