#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS - builds the libFuzzer harnesses (clang, address and
# undefined-behaviour sanitizers) in build/fuzz, makes seed corpora from the
# project's own files, runs every harness SECONDS (two at a time), and prints
# a table: executions, executions per second, coverage, corpus, crashes.
# Exits 1 if any harness crashed, leaked or tripped a sanitizer; its input is
# kept in build/fuzz/artifacts/HARNESS/ (add it to tests/fuzz/regress/HARNESS/,
# whose files every run replays first).
#
#   bash tests/fuzz/run.sh 10                      # the short run CI does (scripts/test.sh)
#   FUZZ_RUNS=10000000 bash tests/fuzz/run.sh 7200 # the long run of docs/fuzzing.md: 10 M
#                                                  # executions a harness (at most 2 h each)
#
# Corpora grow in build/fuzz/corpus/ across runs; FUZZ_FRESH=1 starts anew;
# FUZZ_HARNESSES="a b" runs those, in that order; FUZZ_JOBS=N runs N at a time;
# FUZZ_BUILD=DIR builds in DIR instead of build/fuzz.
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$here"
B=${FUZZ_BUILD:-build/fuzz}
par=${FUZZ_JOBS:-2}
CC=clang CXX=clang++ cmake -S . -B $B -DCMAKE_BUILD_TYPE=Debug -DRETRO_FUZZ=ON -DRETRO_TESTS=OFF -DRETRO_MPI=OFF \
    -DRETRO_NATIVE=OFF >/dev/null
cmake --build $B -j"$(nproc)" >/dev/null
all=$(cd $B/tests/fuzz && ls fuzz_* | grep -v '\.' | sed 's/^fuzz_//' | sort)
harnesses=${FUZZ_HARNESSES:-$all}
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
# one thread a harness: OpenMP's spinning workers would only slow every execution
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# --- seeds, from the project's own files ---------------------------------------
S=$B/seeds
if [ ! -f $S/.made ]; then
    rm -rf $S && mkdir -p $S
    for h in $all; do mkdir -p $S/$h; done
    retro=$B/retro
    w=$(mktemp -d)
    trap 'rm -rf "$w"' EXIT
    mkdir "$w/docs"
    for f in $(ls datasets/sotu/*.txt | head -3); do head -c 6000 "$f" > "$w/docs/$(basename "$f")"; done
    # a small tokenizer, knowledge base, index and checkpoint, made by retro itself
    $retro tokenizer train --vocab-size 300 -o "$w/small.rtok" "$w/docs" >/dev/null
    cp "$w/small.rtok" $S/rtok/small.rtok
    $retro index add "$w/kb" "$w/docs" --tokenizer "$w/small.rtok" --quiet >/dev/null
    $retro index build "$w/kb" --dim 64 >/dev/null
    cp "$w/kb/manifest.json" $S/manifest/kb.json
    for f in "$w"/kb/index/*.df; do [ -e "$f" ] && cp "$f" $S/df/; done
    $retro index build "$w/kb" --retrain --project 8 >/dev/null   # a projection (index/embed_pca.h)
    for f in "$w"/kb/index/pca-*.bin; do { printf '\000'; cat "$f"; } > $S/pca/$(basename "$f"); done
    $retro train "$w/kb" -o "$w/m" --mode baseline --steps 1 --context 64 --width 8 --layers 1 --heads 1 \
        --batch 1 --eval-seqs 1 --quiet >/dev/null 2>&1
    $retro train "$w/kb" -o "$w/r" --steps 1 --context 128 --width 8 --layers 2 --heads 1 --batch 1 \
        --neighbours 1 --enc-layers 1 --enc-width 4 --enc-heads 1 --eval-seqs 1 --quiet >/dev/null 2>&1
    cp "$w/m/model.safetensors" $S/safetensors/baseline.safetensors
    cp "$w/r/model.safetensors" $S/safetensors/retro.safetensors
    cp "$w/r/train.safetensors" $S/safetensors/train.safetensors
    # text for the encoder, and one file of each corpus format (the first byte picks it)
    for f in "$w"/docs/*; do head -c 2000 "$f" > $S/encode/$(basename "$f"); done
    printf 'caf\xc3\xa9 na\xc3\xafve \xf0\x9f\x99\x82 \xe2\x80\x94 it'"'"'s 12,345.6\r\n\t  end' > $S/encode/unicode
    { printf '\000'; head -c 1500 "$w/docs/$(ls "$w/docs" | head -1)"; } > $S/corpus/text
    printf '\001<html><head><title>T &amp; U</title><style>x{}</style></head><body><p>Hello <b>w</b>orld&#33;</p><script>no()</script><pre> a\n b</pre></body></html>' > $S/corpus/html
    printf '\002{"id":"a","text":"one","title":"T"}\n{"id":2,"text":"two \\u00e9"}\nnot json\n{"text":""}\n' > $S/corpus/jsonl
    printf '\003[{"id":"x","text":"first","title":"A"},{"text":"second \\ud83d\\ude42"}]' > $S/corpus/json
    printf '\013{"data":[{"index":0,"embedding":[0.5,-1,2e-3,4]},{"index":1,"embedding":[1,2,3,4]}],"model":"m"}' > $S/http/two
    printf '\000{"object":"list","data":[{"object":"embedding","embedding":[0.1,0.2,0.3],"index":0}]}' > $S/http/one
    # a small GPT-2 pair: the 256 byte tokens in GPT-2's spelling, a few merges, <|endoftext|>
    /usr/bin/python3 - "$S/gpt2/small" <<'EOF'
import json, struct, sys
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
sp = {b: chr(c) for b, c in zip(bs, cs)}
enc = {sp[b]: i for i, b in enumerate(range(256))}
merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]
for a, b in merges:
    enc[a + b] = len(enc)
enc["<|endoftext|>"] = len(enc)
e = json.dumps(enc, ensure_ascii=False).encode()
v = ("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode()
open(sys.argv[1], "wb").write(struct.pack("<I", len(e)) + e + v)
EOF
    rm -rf "$w"
    trap - EXIT
    touch $S/.made
fi

# a 4-bit code file (index/sq4.h) of 3 vectors of 64 dimensions, after the harness's own first byte
mkdir -p $S/sq4
/usr/bin/python3 - "$S/sq4/three" <<'EOF'
import struct, sys
d, n = 64, 3
head = b"RTRSQ4\0\1" + struct.pack("<IIQQ", d, d // 2, n, 0) + struct.pack("<%df" % d, *[0.0] * d) + struct.pack("<%df" % d, *[0.1] * d)
ids_at = (len(head) + 63) // 64 * 64
body = head.ljust(ids_at, b"\0") + struct.pack("<3q", 7, 8, 9) + struct.pack("<3f", 1, 1, 1)
codes_at = (len(body) + 63) // 64 * 64
open(sys.argv[1], "wb").write(b"\1" + body.ljust(codes_at, b"\0") + bytes(range(96)))
EOF

# the server's requests, as docs/server.md shows them (the first byte picks the endpoint)
mkdir -p $S/serve
printf '\000{"query":"the space program","k":3,"continuation":true,"exclude_docs":[1,2]}' > $S/serve/search
printf '\001{"prompt":"The economy","max_tokens":64,"temperature":0,"top_p":0.9,"top_k":40,"seed":7,"stop":["\\n\\n","."],"stream":true}' > $S/serve/completion
printf '\002{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What about jobs?"},{"role":"assistant","content":"Yes."}],"max_tokens":40,"stop":"x"}' > $S/serve/chat
printf '\003{"input":["hello world","the economy"],"encoding_format":"base64"}' > $S/serve/embed
printf '\004{"question":"Who keeps the lighthouse?","passages":3,"quotes":2,"max_tokens":64,"temperature":0}' > $S/serve/ask
printf '\005{"documents":[{"name":"notes/a.txt","text":"one"},{"name":"b.html","text":"<p>two</p>"}]}' > $S/serve/docs
printf '\006/v1/documents/42' > $S/serve/docid
printf '\00717&100' > $S/serve/page
# blocks of postings as the lexical index stores them (the key's last chunk, the indexed range, then the
# header: last - first, highest count, shortest length; then gap/count pairs): chunks 8, 9, 12 and 136
mkdir -p $S/lexical
printf '\210\000\000\000\000\000\000\000\377\377\000\000\000\000\000\000\200\001\007\003\000\002\001\001\003\007\174\001' > $S/lexical/block
printf 'Hello, WORLD! snake_case x86-64 caf\303\251 e=mc2.\000\000\000\000\000\000\000' > $S/lexical/words

# a reader's responses (retriever/reader.h; the first byte picks chat or completions, the status, models)
mkdir -p $S/reader
printf '\000{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Agnes [1]."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3}}' > $S/reader/chat
printf '\001{"object":"text_completion","choices":[{"text":" In 1931.","index":0,"logprobs":null,"finish_reason":"length"}]}' > $S/reader/completions
printf '\002{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":401}}' > $S/reader/error
printf '\004{"object":"list","data":[{"id":"rtr","object":"model"}]}' > $S/reader/models

# --- runs ------------------------------------------------------------------------
[ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf $B/corpus
run_one() {   # HARNESS: replay the regressions, then fuzz for $secs
    local h=$1 bin=$B/tests/fuzz/fuzz_$1
    mkdir -p $B/corpus/$h $B/artifacts/$h
    local reg=tests/fuzz/regress/$h
    if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
        $bin -runs=0 "$reg" > $B/$h.regress.log 2>&1 || { echo "$h: a regression input fails again" >&2; return 1; }
    fi
    local runs=() max_len=16384
    [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
    case $h in   # room for what the parser reads: a checkpoint, a frequency table; text is enough at 4 KiB
        safetensors|df) max_len=65536 ;;
        encode) max_len=4096 ;;
    esac
    $bin "${runs[@]}" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=3072 -max_len=$max_len \
        -artifact_prefix=$B/artifacts/$h/ $B/corpus/$h $S/$h > $B/$h.log 2>&1
}
failed=0
pids=()
names=()
for h in $harnesses; do
    run_one "$h" &
    pids+=($!)
    names+=("$h")
    if [ ${#pids[@]} -ge "$par" ]; then
        wait "${pids[0]}" || { failed=1; echo "fuzz_${names[0]}: FAILED (see $B/${names[0]}.log)" >&2; }
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed=1; echo "fuzz_${names[$i]}: FAILED (see $B/${names[$i]}.log)" >&2; }
done

printf '%-14s %14s %10s %8s %8s %8s\n' harness executions exec/s cov corpus crashes
for h in $harnesses; do
    log=$B/$h.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)
    cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | awk '{print $2}')
    corp=$(ls $B/corpus/$h | wc -l)
    crashes=$(ls $B/artifacts/$h | wc -l)
    printf '%-14s %14s %10s %8s %8s %8s\n' "$h" "${execs:--}" "${rate:--}" "${cov:--}" "$corp" "$crashes"
    [ "$crashes" = 0 ] || failed=1
done
exit $failed
