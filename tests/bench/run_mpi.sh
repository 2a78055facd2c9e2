#!/usr/bin/env bash
# run_mpi.sh - weak scaling under mpirun on this machine (docs/scale.md): a fixed amount of work per
# rank, for 1, 2 and 4 ranks (RANKS), each rank with one partition of COPIES copies of the bundled
# State of the Union addresses (about 8 K chunks a copy), and for each job size:
#   add     `mpirun -np R retro index add` of R x COPIES copies into R partitions (wall seconds);
#   build   `mpirun -np R retro index build` (trained once: statistics summed, sample gathered);
#   search  bench_multi: QUERIES searches in one job, vector and hybrid (p50, p99, the payload bytes the
#           ranks gave the collectives per query), and one `retro search` process under mpirun;
#   train   `mpirun -np R retro train` with 2 sequences per rank per step (data parallel) on a plain
#           knowledge base of the first R x 16 addresses: tokens per second and payload bytes per step.
# Two cores: four ranks share them, so read the figures as the cost of the distribution, not speed-up.
#
#   bash tests/bench/run_mpi.sh BUILD_DIR [WORK_DIR]     # RANKS="1 2 4" COPIES=2 QUERIES=300
set -euo pipefail
build=${1:?usage: run_mpi.sh BUILD_DIR [WORK_DIR]}
work=${2:-/tmp/retro-mpi-bench}
src=$(cd "$(dirname "$0")/../.." && pwd)
retro=$(cd "$build" && pwd)/retro
multi=$(cd "$build" && pwd)/tests/bench/bench_multi
ranks=${RANKS:-1 2 4}
copies=${COPIES:-2}
queries=${QUERIES:-300}
"$retro" --version | grep -q "Open MPI" || { echo "run_mpi: $retro is built without Open MPI" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# not bound to a core each (Open MPI binds 1 or 2 ranks so): their OpenMP threads use every core
mpi() { local n=$1; shift; mpirun --oversubscribe --bind-to none -np "$n" "$@"; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); printf "%.3f" "$(echo "$t1 - $t0" | bc)"; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(mpirun --version | head -1)"
# queries: the first line of every 7th paragraph of the addresses
awk 'NF > 8 && NR % 7 == 0 { print substr($0, 1, 200) }' "$src"/datasets/sotu/*.txt | head -200 > queries.txt

for r in $ranks; do
    mkdir -p "docs$r"
    for c in $(seq $((r * copies))); do
        for f in "$src"/datasets/sotu/*.txt; do { echo "Copy $c of $(basename "$f")."; cat "$f"; } > "docs$r/$c-$(basename "$f")"; done
    done
    add=$(secs mpi "$r" "$retro" index add "kb$r" "docs$r" --partitions "$r" --quiet)
    build=$(secs mpi "$r" "$retro" index build "kb$r" --quiet)
    chunks=$(find "kb$r" -name data.mdb | while read -r f; do mdb_stat -s chunks "$(dirname "$f")" | awk '/Entries/ {print $2}'; done | paste -sd+ | bc)
    echo "{\"ranks\": $r, \"step\": \"add\", \"chunks\": $chunks, \"seconds\": $add}"
    echo "{\"ranks\": $r, \"step\": \"build\", \"chunks\": $chunks, \"seconds\": $build}"
    for mode in vector hybrid; do
        RETRO_COMM_STATS= mpi "$r" "$multi" "kb$r" queries.txt "$queries" 5 "$mode" | sed "s/^{/{\"step\": \"search $mode\", /"
    done
    proc=$(secs mpi "$r" "$retro" search "kb$r" "tax relief for working families" -k 5)
    echo "{\"ranks\": $r, \"step\": \"search process\", \"seconds\": $proc}"
    # training: 2 sequences per rank per step, 16 addresses per rank, a plain knowledge base read by all
    mkdir -p "few$r" && ls "$src"/datasets/sotu/*.txt | head -$((r * 16)) | xargs -I{} cp {} "few$r/"
    "$retro" index add "plain$r" "few$r" --quiet > /dev/null && "$retro" index build "plain$r" --quiet > /dev/null
    RETRO_COMM_STATS=1 mpi "$r" "$retro" train "plain$r" -o "m$r" --steps 12 --batch $((2 * r)) --context 256 \
        --width 128 --layers 4 --heads 4 --eval-every 0 --eval-seqs 4 --save-every 0 --quiet --json \
        > "train$r.json" 2> "train$r.err"
    tps=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).tokens_per_s)' "$PWD/train$r.json")
    params=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).params)' "$PWD/train$r.json")
    sent=$(awk '/^comm: rank 0:/ {print $(NF-3)}' "train$r.err")
    echo "{\"ranks\": $r, \"step\": \"train\", \"params\": $params, \"tokens_per_s\": $tps, \"rank0_payload_bytes\": ${sent:-0}}"
done
