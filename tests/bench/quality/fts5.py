"""fts5.py - the questions of make_questions.py answered by SQLite FTS5's BM25 over the same chunks
as retro's (the baseline of tests/bench/run_quality.sh; Debian's /usr/bin/python3 and its sqlite3).

    /usr/bin/python3 tests/bench/quality/fts5.py KB QUESTIONS.jsonl... [--k 10] \
        [--retro build/release/retro] [--ranks DIR]

Builds an in-memory FTS5 table (default unicode61 tokenizer) with one row per chunk of KB: the
chunk's text, as `retro index dump` and the tokenizer give it (kbdump.py), with its path and byte
span. A question's query becomes an OR of its whitespace-separated words, each a quoted string
(quotes doubled; a word with no letter or digit, which unicode61 makes into nothing, is dropped,
and so are a repeated word, case folded, and a term FTS5 refuses), answered with ORDER BY bm25(t) LIMIT K. The scoring is
bench_quality's: a result answers if its path is the question's and its span overlaps the
question's span (when it has one). Prints one JSON line per set: system, task, k, questions,
top1, top5, mrr, p50_ms and p99_ms (time of one query in this process, fetching its K rows),
plus the table's build time and chunk count on standard error. --ranks DIR writes
DIR/TASK.ranks ("id rank" per question, 0: not within K).
"""
import argparse
import json
import os
import re
import sqlite3
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbdump  # noqa: E402

WORDLIKE = re.compile(r"[^\W_]")


def fts_query(q):
    """The FTS5 MATCH expression for the text q: its words quoted and joined by OR."""
    terms, seen = [], set()
    for w in q.split():
        if not WORDLIKE.search(w) or w.casefold() in seen:
            continue
        seen.add(w.casefold())
        terms.append('"' + w.replace('"', '""') + '"')
    return " OR ".join(terms)


def parseable(db, expr):
    """expr, less any term FTS5 refuses (quoting makes every word a string it accepts today)."""
    try:
        db.execute("SELECT 1 FROM t WHERE t MATCH ? LIMIT 0", (expr,)).fetchall()
        return expr
    except sqlite3.OperationalError:
        ok = []
        for term in expr.split(" OR "):
            try:
                db.execute("SELECT 1 FROM t WHERE t MATCH ? LIMIT 0", (term,)).fetchall()
                ok.append(term)
            except sqlite3.OperationalError:
                pass
        return " OR ".join(ok)


def pct(v, p):
    v = sorted(v)
    return v[int(p * (len(v) - 1) + 0.5)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kb")
    ap.add_argument("questions", nargs="+")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--retro", default=os.environ.get("RETRO", "retro"))
    ap.add_argument("--ranks")
    a = ap.parse_args()

    corpus = kbdump.load(a.kb, a.retro)
    t0 = time.perf_counter()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(text, path UNINDEXED, start UNINDEXED, end UNINDEXED)")
    paths = {d["id"]: d["path"] for d in corpus.docs}
    db.executemany("INSERT INTO t(text, path, start, end) VALUES (?, ?, ?, ?)",
                   ((corpus.chunk_text(i), paths[doc], s, e) for i, (doc, s, e) in enumerate(corpus.chunks)))
    db.commit()
    print(f"fts5: {len(corpus.chunks)} chunks indexed in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    sql = "SELECT path, start, end FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?"
    for qfile in a.questions:
        qs = [json.loads(line) for line in open(qfile, encoding="utf-8") if line.strip()]
        task = qs[0]["task"] if qs else os.path.splitext(os.path.basename(qfile))[0]
        lat, ranks, empty = [], [], 0
        for q in qs:
            expr = parseable(db, fts_query(q["query"]))
            t = time.perf_counter()
            rows = db.execute(sql, (expr, a.k)).fetchall() if expr else []
            lat.append(time.perf_counter() - t)
            empty += not expr
            span = q.get("span")
            rank = next((i + 1 for i, (p, s, e) in enumerate(rows)
                         if p == q["path"] and (span is None or (s < span[1] and span[0] < e))), 0)
            ranks.append(rank)
        if empty:
            print(f"fts5: {task}: {empty} queries with no word to search for", file=sys.stderr)
        if a.ranks:
            os.makedirs(a.ranks, exist_ok=True)
            with open(os.path.join(a.ranks, task + ".ranks"), "w") as f:
                f.writelines(f"{q['id']} {r}\n" for q, r in zip(qs, ranks))
        n = max(len(qs), 1)
        print(json.dumps({"system": "fts5", "task": task, "k": a.k, "questions": len(qs),
                          "top1": round(sum(r == 1 for r in ranks) / n, 5),
                          "top5": round(sum(1 <= r <= 5 for r in ranks) / n, 5),
                          "mrr": round(sum(1 / r for r in ranks if r) / n, 5),
                          "p50_ms": round(1e3 * pct(lat, 0.5), 3) if lat else None,
                          "p99_ms": round(1e3 * pct(lat, 0.99), 3) if lat else None}), flush=True)


if __name__ == "__main__":
    main()
