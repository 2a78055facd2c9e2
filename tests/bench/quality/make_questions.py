"""make_questions.py - search-quality questions over a knowledge base built from a documentation
tree, each with the answer a search should find (tests/bench/run_quality.sh runs them).

    /usr/bin/python3 tests/bench/quality/make_questions.py KB --format html|rst --out DIR \
        [--retro build/release/retro] [--n 200] [--seed 20261201]

Reads the documents and chunks through `retro index dump KB` (kbdump.py) and the source files at
the documents' paths, and writes three sets of JSON lines to DIR:
  titles.jsonl     query: a page's title (html: the <title> retro extracted, less its
                   " - Python 3.11.2 documentation" suffix; rst: the file's first section title);
                   answer: any chunk of that page. Titles that two pages share are left out.
  headings.jsonl   query: a section heading (html: h1-h3 of the main body, read with html.parser;
                   rst: underlined titles of the first three levels); answer: a chunk of that page
                   overlapping the section (from the heading to the next one). Headings found on
                   two pages or equal to their page's title are left out.
  perturbed.jsonl  query: a passage of 40 words of prose from a chunk onwards, with 8 of its words
                   dropped; answer: a chunk overlapping the passage. Passages that occur twice are
                   left out.
Each line: {"id", "query", "path", "span": [start, end] (bytes of the document's extracted text)
or null (any chunk of path), "task"}. Everything is chosen with random.Random(seed): the same
knowledge base gives the same questions. A summary goes to standard error.
"""
import argparse
import html.parser
import json
import os
import random
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kbdump  # noqa: E402

SUFFIX = re.compile(r"\s+[\u2014\u2013|-]+\s+[^\u2014\u2013|]*\bdocumentation\s*$")
PASSAGE_WORDS, DROPPED = 40, 8


def norm(s):
    return " ".join(s.split())


# --------------------------------------------------------------------------------- locating
def ws_pattern(s):
    """A regex matching s with any whitespace or permalink marks (or none) between its characters:
    the HTML parser and retro's extractor need not agree on where blocks add spaces, and the
    parser skips the permalinks (a.headerlink, a pilcrow) that retro keeps."""
    return r"[\s\u00b6]*".join(re.escape(c) for c in s if not c.isspace())


def find_heading(text, start, heading, context):
    """The character offset of heading in text (str) at or after start, where it is followed (past
    a permalink mark) by the first words of context; None if there is no such place."""
    pat = ws_pattern(heading) + r"[\s\u00b6]*" + ws_pattern(context)
    m = re.compile(pat).search(text, start)
    return m.start() if m else None


# ----------------------------------------------------------------------------------- html
class HeadingParser(html.parser.HTMLParser):
    """h1-h3 inside the main body (div role="main"; the whole page if there is none), each with
    the first words of the text after it. Permalinks (a.headerlink) and scripts are skipped."""

    CONTEXT_WORDS = 6

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headings = []      # [level, text, context]
        self.all_headings = []  # the same, anywhere in the page
        self.div_depth = 0
        self.main_depth = None  # div depth of the main body while inside it
        self.saw_main = False
        self.in_heading = None  # [level, text parts, in_main]
        self.skip = 0           # inside a headerlink, script or style
        self.pending = []       # headings still collecting context words

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div":
            self.div_depth += 1
            if self.main_depth is None and a.get("role") == "main":
                self.main_depth, self.saw_main = self.div_depth, True
        elif tag in ("script", "style") or (tag == "a" and "headerlink" in (a.get("class") or "").split()):
            self.skip += 1
        elif tag in ("h1", "h2", "h3") and self.in_heading is None:
            self.in_heading = [int(tag[1]), [], self.main_depth is not None]

    def handle_endtag(self, tag):
        if tag == "div":
            if self.main_depth == self.div_depth:
                self.main_depth = None
            self.div_depth -= 1
        elif tag in ("script", "style", "a") and self.skip:
            self.skip -= 1
        elif tag in ("h1", "h2", "h3") and self.in_heading and self.in_heading[0] == int(tag[1]):
            level, parts, in_main = self.in_heading
            self.in_heading = None
            h = [level, norm("".join(parts)), []]
            if h[1]:
                self.all_headings.append(h)
                if in_main:
                    self.headings.append(h)
                self.pending.append(h)

    def handle_data(self, data):
        if self.skip:
            return
        if self.in_heading:   # a heading's words are the context of the ones before it, too
            self.in_heading[1].append(data)
        words = data.split()
        for h in self.pending:
            h[2].extend(words[:self.CONTEXT_WORDS - len(h[2])])
        self.pending = [h for h in self.pending if len(h[2]) < self.CONTEXT_WORDS]


def html_headings(path):
    """[(level, text, context)] of the page's main body."""
    p = HeadingParser()
    with open(path, encoding="utf-8", errors="replace") as f:
        p.feed(f.read())
    p.close()
    hs = p.headings if p.saw_main else p.all_headings
    return [(lv, t, " ".join(c)) for lv, t, c in hs]


# ------------------------------------------------------------------------------------ rst
ADORN = re.compile(r"([=\-`:'\"~^_*+#<>.])\1{2,}")


def rst_headings(path):
    """[(level, text, context)] of the file's section titles of the first three levels (the
    adornment styles, underline or over- and underline, in the order they first appear); the
    context is the underline, which follows the title in the plain text retro extracted."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    styles, out, i = [], [], 0
    while i + 1 < len(lines):
        over = ADORN.fullmatch(lines[i].rstrip())
        if over and i + 2 < len(lines) and lines[i + 1].strip() and not ADORN.fullmatch(lines[i + 1].strip()):
            under = ADORN.fullmatch(lines[i + 2].rstrip())
            if under and under.group(0) == over.group(0) and (i == 0 or not lines[i - 1].strip()):
                title, style, line_under, i = lines[i + 1].strip(), (over.group(1), True), under.group(0), i + 3
            else:
                i += 1
                continue
        else:
            text, under = lines[i], ADORN.fullmatch(lines[i + 1].rstrip())
            if (not under or not text.strip() or text[0].isspace() or ADORN.fullmatch(text.rstrip())
                    or text.startswith("..") or len(under.group(0)) < min(len(text.rstrip()), 4)
                    or (i > 0 and lines[i - 1].strip())):
                i += 1
                continue
            title, style, line_under, i = text.strip(), (under.group(1), False), under.group(0), i + 2
        if style not in styles:
            styles.append(style)
        level = styles.index(style) + 1
        if level <= 3:
            out.append((level, norm(title), line_under[:3]))
    return out


# ------------------------------------------------------------------------------ question sets
def page_docs(corpus, fmt):
    ext = (".html", ".htm") if fmt == "html" else (".rst",)
    return sorted((d for d in corpus.docs if d["path"].endswith(ext) and os.path.exists(d["path"])),
                  key=lambda d: d["path"])


def titles(corpus, fmt, n, rng, log):
    cand = {}
    for d in page_docs(corpus, fmt):
        if fmt == "html":
            t = norm(SUFFIX.sub("", d["title"]))
        else:
            hs = rst_headings(d["path"])
            t = hs[0][1] if hs else ""
        if t:
            cand.setdefault(t.casefold(), []).append((t, d))
    dup = sum(len(v) for v in cand.values() if len(v) > 1)
    single = [v[0] for v in cand.values() if len(v) == 1]
    log(f"titles: {len(single)} pages with a title of their own, {dup} pages sharing a title left out")
    pick = rng.sample(single, min(n, len(single)))
    pick.sort(key=lambda td: td[1]["path"])
    return [{"query": t, "path": d["path"], "span": None, "task": "titles"} for t, d in pick]


def headings(corpus, fmt, n, rng, log):
    found, where, missed = [], {}, 0
    for d in page_docs(corpus, fmt):
        hs = html_headings(d["path"]) if fmt == "html" else rst_headings(d["path"])
        if not hs:
            continue
        raw = corpus.text(d)
        text = raw.decode("utf-8", "replace")
        title = norm(SUFFIX.sub("", d["title"])).casefold() if fmt == "html" else hs[0][1].casefold()
        at, placed = 0, []
        for level, h, ctx in hs:
            c = find_heading(text, at, h, ctx)
            if c is None:
                missed += 1
                continue
            at = c + 1
            placed.append((len(text[:c].encode("utf-8")), h))
        for j, (start, h) in enumerate(placed):
            end = placed[j + 1][0] if j + 1 < len(placed) else len(raw)
            where.setdefault(h.casefold(), set()).add(d["path"])
            if h.casefold() != title and end > start and re.search(r"[^\W_]", h):
                found.append((d["path"], start, end, h))
    shared = {k for k, v in where.items() if len(v) > 1}
    cand = [f for f in found if f[3].casefold() not in shared]
    log(f"headings: {len(found) + missed} in the pages, {missed} not found in the extracted text, "
        f"{len(found) - len(cand)} shared with another page left out, {len(cand)} to choose from")
    pick = sorted(rng.sample(cand, min(n, len(cand))))
    return [{"query": h, "path": p, "span": [s, e], "task": "headings"} for p, s, e, h in pick]


WORD = re.compile(rb"\S+")
PROSE = re.compile(r"[(\"'\u201c]?[A-Za-z][A-Za-z'\u2019-]*[.,;:!?)\"'\u201d]*")
SENTENCE = re.compile(rb"(?:(?<=[.!?])\s+|\n\s*\n\s*)(?=[A-Z])")


def passage(raw, start, end):
    """(span start, span end, words) of PASSAGE_WORDS words of prose from the first sentence that
    starts in raw[start:end], or None."""
    m = SENTENCE.search(raw, start, end)
    s = m.end() if m else (start if start == 0 else None)
    if s is None or s >= end:
        return None
    words = []
    for w in WORD.finditer(raw, s):
        words.append(w)
        if len(words) == PASSAGE_WORDS:
            break
    if len(words) < PASSAGE_WORDS:
        return None
    a, b = words[0].start(), words[-1].end()
    if re.search(rb"\n[ \t]*\n", raw[a:b]):   # one paragraph, not a list or a table
        return None
    text = [w.group(0).decode("utf-8", "replace") for w in words]
    if sum(1 for w in text if PROSE.fullmatch(w)) < 0.8 * PASSAGE_WORDS:
        return None
    return a, b, text


def perturbed(corpus, n, rng, log):
    order = list(range(len(corpus.chunks)))
    rng.shuffle(order)
    out, seen, tried, repeated = [], set(), 0, 0
    for i in order:
        if len(out) == n:
            break
        doc, start, end = corpus.chunks[i]
        tried += 1
        raw = corpus.text(doc)
        p = passage(raw, start, end)
        if not p or (doc, p[0]) in seen:
            continue
        a, b, words = p
        if corpus.blob.count(raw[a:b]) > 1:
            repeated += 1
            continue
        seen.add((doc, a))
        drop = set(rng.sample(range(PASSAGE_WORDS), DROPPED))
        q = " ".join(w for k, w in enumerate(words) if k not in drop)
        out.append({"query": q, "path": corpus.by_id[doc]["path"], "span": [a, b], "task": "perturbed"})
    log(f"perturbed: {len(out)} passages from {tried} chunks tried ({repeated} passages found twice left out)")
    out.sort(key=lambda q: (q["path"], q["span"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kb")
    ap.add_argument("--format", choices=("html", "rst"), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--retro", default=os.environ.get("RETRO", "retro"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261201)
    a = ap.parse_args()

    def log(msg):
        print(f"make_questions: {msg}", file=sys.stderr)

    corpus = kbdump.load(a.kb, a.retro)
    log(f"{a.kb}: {len(corpus.docs)} documents, {len(corpus.chunks)} chunks")
    os.makedirs(a.out, exist_ok=True)
    sets = {"titles": titles(corpus, a.format, a.n, random.Random(a.seed), log),
            "headings": headings(corpus, a.format, a.n, random.Random(a.seed + 1), log),
            "perturbed": perturbed(corpus, a.n, random.Random(a.seed + 2), log)}
    for task, qs in sets.items():
        with open(os.path.join(a.out, task + ".jsonl"), "w", encoding="utf-8") as f:
            for k, q in enumerate(qs):
                q = {"id": f"{task}-{k + 1:03d}", **q}
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        if len(qs) < a.n:
            log(f"{task}: only {len(qs)} questions")


if __name__ == "__main__":
    main()
