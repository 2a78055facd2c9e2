#!/usr/bin/env bash
# mpi.sh - a knowledge base of partitions under mpirun (Open MPI, ranks on this machine):
#   - `mpirun -np 2 retro index add` writes the same partitions, byte for byte in their LMDB records,
#     as one process does; a rank killed with SIGKILL mid-ingest, then a rerun, ends there too;
#   - `mpirun -np 2 retro index build` trains once (a projection and an inverted file's quantizer
#     on a sample gathered from the ranks) and writes the same index files as one process;
#   - `mpirun -np N retro search`, N = 2..5 (5: a rank without a partition), prints exactly what one
#     process prints, in every mode, with exclusions and continuations;
#   - the model's neighbours over partitions (rtr_multi_neighbours), each rank asking for its own
#     queries, are one process's;
#   - `mpirun -np 2 retro train` (data parallel: each rank a share of every batch, gradients summed)
#     logs the losses of one process within float rounding; killed after a checkpoint and resumed
#     under mpirun, it ends with the weights of a run never interrupted; `mpirun -np 3 retro eval`
#     prints one process's bits per byte;
#   - a rank that fails ends the job with one message from rank 0 naming the rank; commands that run
#     as one process refuse several ranks.
source "$(dirname "$0")/lib.sh"
"$RETRO" --version | grep -q "Open MPI" || { echo "skip: retro built without Open MPI"; exit 0; }
command -v mpirun > /dev/null || fail "retro is built with Open MPI but mpirun is missing (apt-get install openmpi-bin)"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1   # more ranks than cores: this is a test of the distribution
mpi() { local n=$1; shift; mpirun --oversubscribe -np "$n" "$@"; }

sotu_copies docs 2
# every LMDB record of each partition (keys and values, in key order)
dump() { for p in 0 1 2 3; do mdb_dump -a -p "$1/part-000$p/store"; done | md5sum | cut -d' ' -f1; }

# --- add ---------------------------------------------------------------------------------------
"$RETRO" index add one docs --partitions 4 --quiet > one.txt
mpi 2 "$RETRO" index add two docs --partitions 4 --quiet > two.txt
[ "$(dump one)" = "$(dump two)" ] || fail "add: the partitions of 2 ranks differ from one process's"
[ "$(wc -l < two.txt)" = 3 ] || { cat two.txt; fail "add: rank 0 alone reports"; }
grep -q "126 new" two.txt || { cat two.txt; fail "add: the report counts every rank's files"; }
mkdir -p odd && for i in 1 2 3 4 5 6 7 8; do head -c 2000 /dev/urandom > "odd/b$i.bin"; echo "note $i" > "odd/t$i.txt"; done
mpi 2 "$RETRO" index add skips odd --partitions 4 --quiet > skips.txt
[ "$(grep -c '^  binary ' skips.txt)" = 8 ] || { cat skips.txt; fail "add: rank 0 reports every rank's skipped files"; }
ok "mpirun -np 2 index add writes the partitions one process writes, and reports every rank's skips"

# rank 1 killed at its third commit, then the rerun
rc=0
(RETRO_TEST_CRASH=after-commit:3 RETRO_TEST_CRASH_RANK=1 mpi 2 "$RETRO" index add killed docs --partitions 4 \
    --quiet --batch-size 64k > /dev/null 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "add: the job went on with a rank killed"
mpi 2 "$RETRO" index add killed docs --quiet > /dev/null
[ "$(dump killed)" = "$(dump one)" ] || fail "add: a killed rank, rerun, differs from an uninterrupted run"
ok "a rank killed mid-add, rerun: every partition equals an uninterrupted run's"

# --- build --------------------------------------------------------------------------------------
"$RETRO" index build one --index-type IVF32,Flat --project 32 --nprobe 8 --quiet > /dev/null
mpi 2 "$RETRO" index build two --index-type IVF32,Flat --project 32 --nprobe 8 --quiet > /dev/null
cmp -s one/index/trained-000.faiss two/index/trained-000.faiss || fail "build: the trained quantizers differ"
for p in 0 1 2 3; do
    for f in one/part-000$p/index/*; do
        cmp -s "$f" "two/part-000$p/index/$(basename "$f")" || fail "build: $f differs from 2 ranks' file"
    done
done
ok "mpirun -np 2 index build trains once and writes the files one process writes"
# rank 1 killed at its first checkpoint of a partition's build, then the rerun: the same files
rc=0
(RETRO_TEST_CRASH=checkpoint:1 RETRO_TEST_CRASH_RANK=1 mpi 2 "$RETRO" index build killed --index-type IVF32,Flat \
    --project 32 --nprobe 8 --quiet --checkpoint 0.001 > /dev/null 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "build: the job went on with a rank killed"
mpi 2 "$RETRO" index build killed --quiet > /dev/null
cmp -s one/index/trained-000.faiss killed/index/trained-000.faiss || fail "build: killed and rerun, another quantizer"
for p in 0 1 2 3; do
    a=$(ls one/part-000$p/index/*.faiss | xargs -n1 basename | sort | head -1)
    b=$(ls killed/part-000$p/index/*.faiss | xargs -n1 basename | sort | tail -1)
    cmp -s "one/part-000$p/index/$a" "killed/part-000$p/index/$b" || fail "build: partition $p killed and rerun differs"
done
ok "a rank killed mid-build, rerun under mpirun: every partition's index equals an uninterrupted build's"

# --- search -------------------------------------------------------------------------------------
q="we will cut taxes and balance the budget for working families"
excl=$("$RETRO" search one "$q" -k 1 --json | json_get doc_id)
for mode in vector lexical hybrid; do
    "$RETRO" search one "$q" --mode "$mode" -k 8 --json --continuation --exclude-doc "$excl" > want.json
    [ "$(wc -l < want.json)" = 8 ] || fail "search $mode: 8 results expected"
    grep -q "\"doc_id\": *$excl," want.json && fail "search $mode: an excluded document was returned"
    for n in 2 3 5; do
        mpi "$n" "$RETRO" search one "$q" --mode "$mode" -k 8 --json --continuation --exclude-doc "$excl" > got.json
        cmp -s want.json got.json || { diff want.json got.json | head -5; fail "search $mode, $n ranks: not one process's results"; }
    done
done
echo "$q" | mpi 2 "$RETRO" search one - -k 3 --json > stdin.json
head -3 want.json > /dev/null
[ "$(wc -l < stdin.json)" = 3 ] || fail "search: a query on standard input (rank 0 reads it)"
ok "mpirun -np 2, 3 and 5 search prints what one process prints (vector, lexical, hybrid)"

# --- serve: rank 0 answers HTTP, every rank searches its partitions ----------------------------------
port=$(( 20000 + RANDOM % 20000 ))
mpi 2 "$RETRO" serve --kb one --read-only --port $port 2> serve.err &
job=$!
serve_pids+=($job)
for _ in $(seq 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break; sleep 0.1; done
for mode in vector hybrid; do
    curl -s "http://127.0.0.1:$port/v1/search" -d "{\"query\": \"$q\", \"k\": 5, \"mode\": \"$mode\"}" > http.json
    "$RETRO" search one "$q" -k 5 --mode "$mode" --json > cli.json
    node -e 'const fs = require("fs");
      const cli = fs.readFileSync("cli.json", "utf8").trim().split("\n").map(l => JSON.parse(l).chunk_id);
      const http = JSON.parse(fs.readFileSync("http.json")).data.map(h => h.chunk_id);
      if (JSON.stringify(cli) !== JSON.stringify(http)) throw new Error(`${cli} against ${http}`);' \
        || fail "serve under mpirun ($mode): /v1/search is not one process's ranking"
done
codes=$(for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w "%{http_code} " "http://127.0.0.1:$port/v1/search" -d '{"query": "jobs and the economy", "k": 3}' & done; wait)
[ "$(echo $codes)" = "200 200 200 200 200 200" ] || fail "serve under mpirun: concurrent searches: $codes"
# rank 0 stops the job: SIGTERM to it drains its requests and lets the other ranks go
for p in $(pgrep -f "retro serve --kb one --read-only --port $port"); do
    tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx OMPI_COMM_WORLD_RANK=0 && kill -TERM "$p"
done
rc=0
wait $job || rc=$?
[ "$rc" = 0 ] || { cat serve.err; fail "serve under mpirun: stopped by rank 0's SIGTERM, exit $rc"; }
ok "mpirun -np 2 serve: /v1/search over every rank's partitions is one process's ranking; 6 at once; a clean stop"

# --- neighbours for the model over partitions ----------------------------------------------------
nbrs=${RETRO_BUILD_DIR:-$(dirname "$RETRO")}/tests/mpi_neighbours
"$nbrs" one 40 3 n1 && cat n1.* | sort -n -k1,1 -k2,2 > n1.txt
[ "$(wc -l < n1.txt)" = 120 ] || fail "neighbours: 40 queries of 3 expected"
[ "$(awk '$3 >= 1099511627776' n1.txt | wc -l)" -gt 0 ] || fail "neighbours: none from another partition than 0"
for n in 2 3; do
    mpi "$n" "$nbrs" one 40 3 "n$n" && cat "n$n".* | sort -n -k1,1 -k2,2 > "n$n.txt"
    cmp -s n1.txt "n$n.txt" || fail "neighbours: $n ranks do not find one process's"
done
ok "neighbours over partitions asked for by 2 and 3 ranks: one process's ids, distances and tokens"

# --- train and eval (a plain knowledge base, read by every rank) ----------------------------------
# same_log A B KEY...: two training logs of as many lines, each KEY within 1e-4 of A's
same_log() {
    node -e 'const fs = require("fs");
      const rd = f => fs.readFileSync(f, "utf8").trim().split("\n").map(JSON.parse);
      const [a, b] = [rd(process.argv[1]), rd(process.argv[2])], keys = process.argv.slice(3);
      if (a.length !== b.length) throw new Error(`log lines ${a.length} and ${b.length}`);
      a.forEach((x, i) => { for (const k of keys)
        if (k in x && !(Math.abs(x[k] - b[i][k]) <= 1e-4 * Math.abs(x[k])))
          throw new Error(`line ${i + 1}: ${k} ${x[k]} (one process) against ${b[i][k]} (ranks)`); });' "$@"
}
# same_eval A B: two `retro eval --json` outputs with the same counts, tokens, leakage chunks and bpb (1e-9)
same_eval() {
    node -e 'const fs = require("fs");
      const [a, b] = process.argv.slice(1, 3).map(f => JSON.parse(fs.readFileSync(f)));
      if (a.documents !== b.documents || a.chunks !== b.chunks || a.runs.length !== b.runs.length) throw new Error("counts");
      a.runs.forEach((r, i) => {
        if (r.tokens !== b.runs[i].tokens || Math.abs(r.bpb - b.runs[i].bpb) > 1e-9 * r.bpb)
          throw new Error(`run ${i}: bpb ${r.bpb} against ${b.runs[i].bpb}`);
        r.leakage.forEach((l, k) => { if (l.chunks !== b.runs[i].leakage[k].chunks) throw new Error("leakage chunks"); });
      });' "$@"
}
mkdir -p few && cp $(ls docs/*.txt | head -12) few/
"$RETRO" index add plain few --quiet > /dev/null
"$RETRO" index build plain --quiet > /dev/null
T=(--context 128 --width 32 --layers 2 --heads 2 --batch 4 --eval-every 3 --eval-seqs 8 --quiet --threads 1
   --steps 6 --save-every 3)
"$RETRO" train plain -o m1 "${T[@]}" 2> /dev/null
mpi 2 "$RETRO" train plain -o m2 "${T[@]}" 2> /dev/null
[ "$(wc -l < m1/log.jsonl)" = 8 ] || fail "train: 8 log lines expected"
same_log m1/log.jsonl m2/log.jsonl loss grad_norm val_loss val_bpb \
    || fail "train: 2 ranks do not log one process's losses"
rc=0
(RETRO_TEST_CRASH=train-saved:1 RETRO_TEST_CRASH_RANK=0 mpi 2 "$RETRO" train plain -o m3 "${T[@]}" > /dev/null 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "train: rank 0 was not killed after its first checkpoint"
mpi 2 "$RETRO" train plain -o m3 --resume --quiet --threads 1 2> /dev/null
cmp -s m2/model.safetensors m3/model.safetensors || fail "train: killed and resumed under mpirun, other weights"
ok "mpirun -np 2 train: one process's losses; killed after a checkpoint, resumed to the same weights"
# training on the knowledge base of partitions: neighbours from every partition, the same under 2 ranks
"$RETRO" train one -o p1 "${T[@]}" 2> /dev/null
mpi 2 "$RETRO" train one -o p2 "${T[@]}" 2> /dev/null
same_log p1/log.jsonl p2/log.jsonl loss val_loss \
    || fail "train over partitions: 2 ranks do not log one process's losses"
ok "train over 4 partitions (neighbours from all of them): the same losses under 2 ranks"
"$RETRO" eval --model p1 --kb one --split val --json > pe1.json
mpi 3 "$RETRO" eval --model p1 --kb one --split val --json > pe3.json
same_eval pe1.json pe3.json \
    || fail "eval over partitions: 3 ranks do not print one process's figures"
ok "eval over 4 partitions (every rank's partitions answer each document's neighbours): one process's figures under 3 ranks"
"$RETRO" eval --model m1 --kb plain --split val --json > e1.json
mpi 3 "$RETRO" eval --model m1 --kb plain --split val --json > e3.json
same_eval e1.json e3.json || fail "eval: 3 ranks do not print one process's figures"
ok "mpirun -np 3 eval prints one process's bits per byte and leakage table"

# --- failures -----------------------------------------------------------------------------------
cp -r one broken
echo '{' > broken/part-0001/manifest.json
rc=0
mpi 2 "$RETRO" search broken "$q" > out.txt 2> err.txt || rc=$?
[ "$rc" != 0 ] || fail "search: a rank that failed went unnoticed"
grep -q "^retro: rank 1: .*part-0001/manifest.json" err.txt || { cat err.txt; fail "search: rank 0 names the failing rank"; }
[ "$(grep -c '^retro:' err.txt)" = 1 ] || { cat err.txt; fail "search: one message for the job"; }
rc=0
mpi 2 "$RETRO" index info one > out.txt 2> err.txt || rc=$?
[ "$rc" != 0 ] || fail "index info ran on 2 ranks"
[ "$(grep -c 'runs as one process' err.txt)" = 1 ] || { cat err.txt; fail "index info under mpirun: one clear refusal"; }
expect_fail 1 "a knowledge base of 4 partitions" "$RETRO" index info one
ok "a failing rank is named by rank 0; one-process commands refuse several ranks"
