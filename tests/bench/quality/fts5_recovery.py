"""fts5_recovery.py - rank-1 recovery of perturbed chunks by SQLite FTS5's BM25, the baseline that
bench_ann's recovery table is measured against (docs/benchmarks.md; Debian's /usr/bin/python3 and
its sqlite3, standard library only).

    BENCH_ANN_TEXTS=q.jsonl BENCH_ANN_RECOVERY_ONLY=1 bench_ann KB 1000     # the same queries
    /usr/bin/python3 tests/bench/quality/fts5_recovery.py KB q.jsonl --db /tmp/kb.fts5 \
        [--retro build/release/retro] [--k 10]

Builds (once; a database that holds as many chunks as KB is reused) an on-disk, contentless FTS5
table (default unicode61 tokenizer) with one row per chunk of KB, rowid = chunk id, from
`retro index dump KB --text` (the chunks' tokens decoded: what retro's lexical index reads), and
beside it a hash of each chunk's text. Each query (a chunk with a fifth of its words dropped)
becomes an OR of its quoted words, as fts5.py asks its questions, answered with
ORDER BY rank (bm25) LIMIT K. A query recovers its chunk when the first row is that chunk or holds
the same text (bench_ann: the same tokens). Prints one JSON line: system, queries, recovery, p50_ms,
p99_ms (one query in this process, its K rows fetched), and the build's seconds and bytes.
"""
import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fts5 import fts_query, parseable, pct  # noqa: E402


def text_hash(text):
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big",
                          signed=True)


def chunk_count(kb, retro):
    out = subprocess.run([retro, "index", "info", kb, "--json"], stdout=subprocess.PIPE, check=True).stdout
    return json.loads(out)["chunks"]


def build(kb, retro, path):
    """The FTS5 database of KB's chunks at path; (seconds, bytes) of the build, 0 seconds if reused."""
    want = chunk_count(kb, retro)
    if os.path.exists(path):
        db = sqlite3.connect(path)
        try:
            have = db.execute("SELECT count(*) FROM h").fetchone()[0]
        except sqlite3.Error:
            have = -1
        db.close()
        if have == want:
            return 0.0, os.path.getsize(path)
        os.remove(path)
    t0 = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(text, content='')")
    db.execute("CREATE TABLE h(id INTEGER PRIMARY KEY, hash INTEGER)")
    dump = subprocess.Popen([retro, "index", "dump", kb, "--text", "--no-tokens"], stdout=subprocess.PIPE, text=True)
    rows, n = [], 0
    for line in dump.stdout:
        if not line.startswith('{"type":"chunk"'):
            continue
        o = json.loads(line)
        rows.append((o["id"], o["text"]))
        if len(rows) == 100000:
            n += flush(db, rows)
    n += flush(db, rows)
    if dump.wait():
        raise RuntimeError(f"retro index dump {kb} failed ({dump.returncode})")
    db.commit()
    db.close()
    print(f"fts5: {n} chunks indexed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return time.perf_counter() - t0, os.path.getsize(path)


def flush(db, rows):
    db.executemany("INSERT INTO t(rowid, text) VALUES (?, ?)", rows)
    db.executemany("INSERT INTO h(id, hash) VALUES (?, ?)", ((i, text_hash(t)) for i, t in rows))
    db.commit()
    n = len(rows)
    rows.clear()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kb")
    ap.add_argument("queries")
    ap.add_argument("--db", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--retro", default=os.environ.get("RETRO", "retro"))
    a = ap.parse_args()

    secs, size = build(a.kb, a.retro, a.db)
    db = sqlite3.connect(a.db)
    qs = [json.loads(line) for line in open(a.queries, encoding="utf-8")]
    lat, hit = [], 0
    for q in qs:
        expr = parseable(db, fts_query(q["query"]))
        t0 = time.perf_counter()
        rows = db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rank LIMIT ?", (expr, a.k)).fetchall() \
            if expr else []
        lat.append((time.perf_counter() - t0) * 1e3)
        if rows:
            first = rows[0][0]
            if first == q["id"]:
                hit += 1
            else:
                h = dict(db.execute("SELECT id, hash FROM h WHERE id IN (?, ?)", (first, q["id"])).fetchall())
                hit += first in h and q["id"] in h and h[first] == h[q["id"]]
    print(json.dumps({"system": "fts5", "queries": len(qs), "recovery": round(hit / len(qs), 4),
                      "p50_ms": round(pct(lat, 0.5), 3), "p99_ms": round(pct(lat, 0.99), 3),
                      "build_s": round(secs, 1), "bytes": size}))


if __name__ == "__main__":
    main()
