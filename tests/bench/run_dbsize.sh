#!/usr/bin/env bash
# run_dbsize.sh - the RETRO effect as the retrieval database grows (the paper's Figure 1, right;
# docs/results.md, "Bits per byte as the database grows"): one RETRO model and a baseline of the
# same decoder, trained on a fixed part of the kernel corpus, evaluated on that part's held-out
# files with the retrieval database at about 10 M, 100 M and 1 B tokens, each with the leakage
# filter's table.
#
#   bash tests/bench/run_dbsize.sh BUILD_DIR BIG_KB [WORK_DIR]     # WORK_DIR default /tmp/dbsize
#
# BIG_KB: the billion-token knowledge base of tests/bench/run_billion.sh, built.
# The databases, nested:
#   10 M:  linux-source-6.1's kernel/, block/, io_uring/, ipc/ and init/ (8.7 M tokens): the
#          model's training knowledge base; its validation files (5%, by content hash, as retro
#          train splits them) are the held-out text;
#   100 M: that, and documents of BIG_KB drawn at random (seed 19) up to 90 M more tokens;
#   1 B:   BIG_KB (it holds the 10 M part, and linux-source-6.12's kernel/, whose files are
#          newer versions of many held-out ones).
# Neighbours never come from the evaluated file itself (eval: the same path in the database).
# The recipe is docs/results.md's (width 192, 4 layers, context 256, batch 8, lr 2e-3, 1,500
# steps; RETRO with --align). STEPS (default "data train eval") picks steps.
set -euo pipefail
build=${1:?usage: run_dbsize.sh BUILD_DIR BIG_KB [WORK_DIR]}
big=${2:?usage: run_dbsize.sh BUILD_DIR BIG_KB [WORK_DIR]}
work=${3:-/tmp/dbsize}
retro=$(cd "$build" && pwd)/retro
k=$(bash "$(dirname "$0")/../../datasets/kernel.sh")
steps=${STEPS:-data train eval}
has() { [[ " $steps " == *" $1 "* ]]; }
mkdir -p "$work"
cd "$work"
timed() {   # LABEL COMMAND...: wall seconds and peak resident memory on stderr
    local label=$1
    shift
    /usr/bin/time -f "$label: %e s, peak %M KB" "$@"
}
recipe=(--context 256 --width 192 --layers 4 --heads 4 --batch 8 --lr 2e-3 --steps 1500 --quiet)

if has data; then
    rm -rf kb10 kb100
    s=$k/linux-source-6.1
    timed "add 10M" "$retro" index add kb10 "$s/kernel" "$s/block" "$s/io_uring" "$s/ipc" "$s/init" --quiet > /dev/null
    timed "build 10M" "$retro" index build kb10 --quiet > /dev/null
    # 100 M: the 10 M part and documents of the billion-token base drawn at random
    "$retro" index dump "$big" --no-tokens | /usr/bin/python3 -c '
import json, random, sys
part = tuple(sys.argv[1] + "/" + d + "/" for d in ("kernel", "block", "io_uring", "ipc", "init"))
docs = []
for line in sys.stdin:
    if not line.startswith("{\"type\":\"doc\""):
        break
    o = json.loads(line)
    if not o["path"].startswith(part):
        docs.append((o["path"], o["tokens"]))
random.Random(19).shuffle(docs)
total = 0
with open("extra100.txt", "w") as f:
    for path, tokens in docs:
        if total >= 90_000_000:
            break
        f.write(path + "\n")
        total += tokens
' "$s" || true   # the dump stops on a closed pipe once the documents are read
    timed "add 100M" "$retro" index add kb100 "$s/kernel" "$s/block" "$s/io_uring" "$s/ipc" "$s/init" --quiet > /dev/null
    timed "add 100M, more" xargs -d '\n' -a extra100.txt "$retro" index add kb100 --quiet > /dev/null
    timed "build 100M" "$retro" index build kb100 --quiet > /dev/null
    # the held-out files: kb10's validation documents
    "$retro" index dump kb10 --no-tokens | /usr/bin/python3 -c '
import json, sys
def is_val(hexhash, frac=0.05):   # lib/split.h
    h = int.from_bytes(bytes.fromhex(hexhash)[:8], "little")
    h = ((h ^ (h >> 31)) * 0x94D049BB133111EB) & (2**64 - 1)
    h ^= h >> 29
    return h % 1000000 < frac * 1e6
for line in sys.stdin:
    if not line.startswith("{\"type\":\"doc\""):
        break
    o = json.loads(line)
    if is_val(o["hash"]):
        print(o["path"])
' > heldout.txt || true
    for kb in kb10 kb100 "$big"; do "$retro" index info "$kb" | sed -n '3,5p'; done
    echo "held-out files: $(wc -l < heldout.txt)"
fi
if has train; then
    timed "train retro" "$retro" train kb10 -o retro "${recipe[@]}" --align
    timed "train baseline" "$retro" train kb10 -o baseline "${recipe[@]}" --mode baseline
fi
if has eval; then
    for kb in kb10 kb100 "$big"; do
        name=$kb
        [ "$kb" = "$big" ] && name=kb1b
        timed "eval $name" xargs -d '\n' -a heldout.txt "$retro" eval --model retro --model baseline --kb "$kb" \
            --json > "eval-$name.json"
    done
fi
