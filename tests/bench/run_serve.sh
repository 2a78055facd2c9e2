#!/usr/bin/env bash
# run_serve.sh - `retro serve` under load, against the same work done in one process in
# the same run:
#   search: /v1/search throughput and p50/p99 with hey at concurrency 1, 2, 8 and 32,
#           against bench_search (the public API's retro_search in a loop) on the same query;
#   completions: tokens per second of 1 stream and of 8 concurrent streams (--parallel 8,
#           decoded together), against `retro generate` of the same length.
# Each figure is the median of RUNS runs (default 3). Needs hey (bash scripts/setup.sh --bench).
#
#   bash tests/bench/run_serve.sh [BUILD_DIR]
#   RUN_SERVE_KB=DIR bash tests/bench/run_serve.sh ...   # serve and search knowledge base DIR instead
#                                                       # (made with the default tokenizer; opened read-only)
#
# The knowledge base is the bundled State of the Union addresses (datasets/sotu); the model
# has the size of docs/results.md's recipe (width 192, 4 layers, 4 heads, context 256), trained
# for one step (its speed does not depend on its weights).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build/release}" && pwd)
runs=${RUNS:-3}
retro=$build/retro
bench=$build/tests/bench/bench_search
command -v hey >/dev/null || { echo "run_serve: hey missing (bash scripts/setup.sh --bench)" >&2; exit 1; }
[ -x "$retro" ] && [ -x "$bench" ] || { echo "run_serve: build $build first" >&2; exit 1; }
w=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$w"' EXIT
cd "$w"
med() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
json() { node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(j[process.argv[1]])' "$1"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%F)"
"$retro" index add kb "$src"/datasets/sotu --quiet > /dev/null
"$retro" index build kb > /dev/null
"$retro" train kb -o m --steps 1 --context 256 --width 192 --layers 4 --heads 4 --batch 1 --eval-seqs 1 --quiet \
    > /dev/null 2>&1
chunks=$("$retro" index info kb --json | json chunks)
kbdir=kb
if [ -n "${RUN_SERVE_KB:-}" ]; then kbdir=$(cd "$RUN_SERVE_KB" && pwd); chunks=$("$retro" index info "$kbdir" --json | json chunks); fi
echo "knowledge base: ${RUN_SERVE_KB:-datasets/sotu}, ${chunks:-?} chunks; model: width 192, 4 layers, context 256 (trained on datasets/sotu)"
query="the space program and the exploration of the moon by our astronauts"
echo "$query" > q.txt
printf '{"query": "%s", "k": 5}' "$query" > body.json

port=$(( 20000 + RANDOM % 20000 ))
url=http://127.0.0.1:$port
"$retro" serve --kb "$kbdir" --model m --port $port --read-only --parallel 8 2> serve.err &
pid=$!
for i in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' $url/health)" = 200 ] && break
    sleep 0.1
done

# --- search --------------------------------------------------------------------------
: > inproc.txt
for r in $(seq "$runs"); do "$bench" "$kbdir" q.txt 2000 5 | tee -a inproc.txt > /dev/null; done
in_qps=$(for l in $(seq "$runs"); do sed -n "${l}p" inproc.txt | json qps; done | med)
in_p50=$(for l in $(seq "$runs"); do sed -n "${l}p" inproc.txt | json p50_ms; done | med)
in_p99=$(for l in $(seq "$runs"); do sed -n "${l}p" inproc.txt | json p99_ms; done | med)
printf '\n| search | queries/s | p50 ms | p99 ms | HTTP / in-process rate |\n| --- | --- | --- | --- | --- |\n'
printf '| in-process (bench_search) | %s | %s | %s | 1 |\n' "$in_qps" "$in_p50" "$in_p99"
for c in 1 2 8 32; do
    : > hey$c.txt
    for r in $(seq "$runs"); do
        hey -n 2000 -c $c -m POST -T application/json -D body.json $url/v1/search > h.txt
        codes=$(sed -n '/^Status code distribution/,/^$/p' h.txt | grep -oE '\[[0-9]+\]' | sort -u | tr -d '\n')
        [ "$codes" = "[200]" ] && ! grep -q '^Error distribution' h.txt || { cat h.txt >&2; exit 1; }
        rps=$(sed -n 's/^ *Requests\/sec: *//p' h.txt)
        p50=$(sed -n 's/^ *50% in \([0-9.]*\) secs.*/\1/p' h.txt | head -1)
        p99=$(sed -n 's/^ *99% in \([0-9.]*\) secs.*/\1/p' h.txt | head -1)
        echo "$rps $p50 $p99" >> hey$c.txt
    done
    rps=$(awk '{print $1}' hey$c.txt | med)
    p50=$(awk '{printf "%.3f\n", $2 * 1000}' hey$c.txt | med)
    p99=$(awk '{printf "%.3f\n", $3 * 1000}' hey$c.txt | med)
    printf '| HTTP, concurrency %d (hey) | %s | %s | %s | %.3f |\n' $c "$rps" "$p50" "$p99" "$(echo "$rps / $in_qps" | bc -l)"
done

# --- completions -------------------------------------------------------------------------
n=256
prompt="The economy of our nation"
gen_tps=$(for r in $(seq "$runs"); do "$retro" generate m "$prompt" --kb "$kbdir" -n $n --temperature 0 --json | json tokens_per_s; done | med)
one() {   # one completion into FILE (timed by the caller; parsed afterwards, outside the timing)
    curl -s -o "$2" -X POST $url/v1/completions \
        -d "{\"prompt\":\"$prompt $1\",\"max_tokens\":$n,\"temperature\":0,\"ignore_eos\":true}"
}
tokens() { node -e 'let s = 0; for (const f of process.argv.slice(1)) s += JSON.parse(require("fs").readFileSync(f, "utf8")).usage.completion_tokens; console.log(s)' "$@"; }
now() { date +%s.%N; }
: > s1.txt; : > s8.txt
for r in $(seq "$runs"); do
    t0=$(now); one x c0.json; t1=$(now)
    echo "$(tokens c0.json) / ($t1 - $t0)" | bc -l >> s1.txt
    t0=$(now)
    for i in 1 2 3 4 5 6 7 8; do one "$i" c$i.json & done
    wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
    t1=$(now)
    echo "$(tokens c1.json c2.json c3.json c4.json c5.json c6.json c7.json c8.json) / ($t1 - $t0)" | bc -l >> s8.txt
done
s1=$(med < s1.txt)
s8=$(med < s8.txt)
printf '\n| completions (%d tokens, greedy) | tokens/s | ratio |\n| --- | --- | --- |\n' $n
printf '| retro generate (after the prompt) | %.1f | 1 |\n' "$gen_tps"
printf '| serve, 1 stream (whole request) | %.1f | %.3f of generate |\n' "$s1" "$(echo "$s1 / $gen_tps" | bc -l)"
printf '| serve, 8 streams together (total) | %.1f | %.2fx one stream |\n' "$s8" "$(echo "$s8 / $s1" | bc -l)"
kill -TERM $pid
wait $pid
pid=
