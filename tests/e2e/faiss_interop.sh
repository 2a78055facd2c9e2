#!/usr/bin/env bash
# Interop: the index files retro writes load in FAISS itself (Debian's
# python3-faiss) and give the same results for the same query vectors, for an
# exact sharded index and for an IVF one.
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
$PY -c 'import faiss' 2>/dev/null || fail "python3-faiss is missing: run scripts/setup.sh"

"$RETRO" index add kb "$SRC/datasets/sotu" --quiet > /dev/null
queries=("the price of oil and energy independence" "civil rights and voting"
         "taxes on the middle class" "nuclear weapons and the Soviet Union" "education and schools")
check() {   # $1: label
    : > q.jsonl
    for q in "${queries[@]}"; do "$RETRO" embed kb "$q" >> q.jsonl; done
    $PY "$E2E_DIR/faiss_interop.py" kb 5 q.jsonl > py.jsonl
    i=0
    for q in "${queries[@]}"; do
        i=$((i + 1))
        "$RETRO" search kb "$q" -k 5 --json > r.jsonl
        node -e '
            const fs = require("fs");
            const mine = fs.readFileSync("r.jsonl", "utf8").trim().split("\n").map(JSON.parse);
            const py = JSON.parse(fs.readFileSync("py.jsonl", "utf8").trim().split("\n")[process.argv[1] - 1]);
            const ids = mine.map(h => h.chunk_id);
            if (JSON.stringify(ids) !== JSON.stringify(py.ids)) { console.error("ids", ids, "faiss", py.ids); process.exit(1); }
            mine.forEach((h, j) => { if (Math.abs(h.distance - py.dist[j]) > 1e-4) { console.error("dist", h.distance, py.dist[j]); process.exit(1); } });
        ' "$i" || fail "$1: query '$q' differs between retro and FAISS"
    done
    ok "$1: python3-faiss reads retro's shards and returns the same ids and distances"
}
"$RETRO" index build kb --shards 3 --quiet > /dev/null
check "exact, 3 shards"
"$RETRO" index build kb --retrain --index-type IVF64,Flat --nprobe 4 --quiet > /dev/null
check "IVF64,Flat nprobe 4, 1 shard"
