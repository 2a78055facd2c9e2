#!/usr/bin/env python3
"""parts_quality.py - perturbed-chunk recovery of a plain knowledge base and of the same files in
partitions, side by side, per search mode (docs/scale.md):

    python3 tests/bench/parts_quality.py RETRO PLAIN_KB PARTS_KB [N] [SOURCE_TEXT]

N chunk texts (of at least 30 words) are found in PLAIN_KB by random 3-word queries drawn from
SOURCE_TEXT (default: one bundled address); each query is the chunk's first 24 words with half of
them dropped (the same queries for both); a query is recovered when the first hit's text is the
chunk's (an exact copy counts)."""
import json, random, subprocess, sys

retro, plain, parts = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 150
source = sys.argv[5] if len(sys.argv) > 5 else "datasets/sotu/1996_william_j_clinton_d.txt"
random.seed(7)
words = open(source).read().split()

def search(kb, q, mode, k=1):
    out = subprocess.run([retro, "search", kb, "-", "-k", str(k), "--mode", mode, "--json"], input=q,
                         capture_output=True, text=True, check=True).stdout   # on stdin: a query may start with "-"
    return [json.loads(line) for line in out.strip().split("\n") if line]

src = []
while len(src) < n:
    i = random.randrange(len(words) - 3)
    for hit in search(plain, " ".join(words[i:i + 3]), "lexical", 3):
        if len(hit["text"].split()) >= 30 and hit["text"] not in src:
            src.append(hit["text"])
src = src[:n]
queries = [" ".join(w for w in t.split()[:24] if random.random() >= 0.5) for t in src]
for mode in ("vector", "lexical", "hybrid"):
    got = {}
    for kb in (plain, parts):
        got[kb] = sum(1 for t, q in zip(src, queries) if (h := search(kb, q, mode)) and h[0]["text"] == t) / n
    print(json.dumps({"mode": mode, "queries": n, "plain": got[plain], "partitions": got[parts]}))
