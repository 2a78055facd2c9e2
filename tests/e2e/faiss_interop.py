"""Reads a retro knowledge base's FAISS shards with Debian's python3-faiss and
searches them with retro's own query vectors; prints, per query, the merged
top-k ids and distances as JSON lines. Used by faiss_interop.sh."""
import json
import sys

import faiss
import numpy as np

kb, k = sys.argv[1], int(sys.argv[2])
man = json.load(open(f"{kb}/manifest.json"))["index"]
shards = [faiss.read_index(f"{kb}/index/{s['file']}") for s in man["shards"]]
if man["nprobe"]:
    for ix in shards:
        faiss.ParameterSpace().set_index_parameter(ix, "nprobe", man["nprobe"])
queries = [json.loads(line) for line in open(sys.argv[3])]
q = np.array([x["embedding"] for x in queries], dtype="float32")
assert q.shape[1] == shards[0].d, (q.shape, shards[0].d)
results = []
for ix in shards:
    d, i = ix.search(q, k)
    results.append((d, i))
for qi in range(len(queries)):
    pool = [(float(d[qi][j]), int(i[qi][j])) for d, i in results for j in range(k) if i[qi][j] >= 0]
    pool.sort()
    print(json.dumps({"ids": [p[1] for p in pool[:k]], "dist": [p[0] for p in pool[:k]]}))
