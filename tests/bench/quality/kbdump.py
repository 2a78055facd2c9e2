"""kbdump.py - a knowledge base's documents and chunks with their text, read through the retro CLI
(shared by make_questions.py and fts5.py; Debian's /usr/bin/python3, standard library only).

`retro index dump KB` gives each document (path, title, byte count, first chunk, chunk count) and
each chunk (document, byte span, token ids) but no text. A document's chunks cover its text end to
end, so the text is the tokens of all chunks decoded by one `retro tokenizer decode` with the
knowledge base's own tokenizer (KB/tokenizer.rtok) and cut at the chunks' spans; load() raises if
the lengths disagree or a document's chunks leave a gap (a tokenizer that does not give back its
bytes, a knowledge base changed during the dump).

    c = kbdump.load("py.kb", "build/release/retro")
    c.docs[0]["path"], c.text(c.docs[0])       # bytes: the document's extracted text
    for doc_id, start, end in c.chunks: ...    # spans in those bytes, chunk id order
"""
import json
import os
import re
import subprocess

_TOKENS = re.compile(r',"tokens":\[([0-9,]*)\]')


class Corpus:
    def __init__(self, docs, chunks, blob, offset):
        self.docs = docs          # dicts from the dump: id, path, title, bytes, first_chunk, chunks, ...
        self.chunks = chunks      # (doc_id, start, end) per chunk, chunk id order
        self.chunk_ids = []       # the chunks' ids, same order
        self.blob = blob          # every document's text, concatenated in document id order
        self.offset = offset      # doc id -> where its text starts in blob
        self.by_id = {d["id"]: d for d in docs}

    def text(self, doc):
        """The document's extracted text (bytes); doc is a dict of docs or a document id."""
        d = doc if isinstance(doc, dict) else self.by_id[doc]
        o = self.offset[d["id"]]
        return self.blob[o:o + d["bytes"]]

    def chunk_text(self, i):
        """The text of chunks[i] (str; a span cut inside a UTF-8 sequence loses those bytes)."""
        doc, start, end = self.chunks[i]
        o = self.offset[doc]
        return self.blob[o + start:o + end].decode("utf-8", "ignore")


def load(kb, retro):
    """Reads KB through the retro binary at retro. Raises RuntimeError if either command fails or
    the decoded text does not match the dump's byte counts."""
    tok = os.path.join(kb, "tokenizer.rtok")
    dump = subprocess.Popen([retro, "index", "dump", kb], stdout=subprocess.PIPE, text=True)
    docs, chunks, ids, parts = [], [], [], []
    for line in dump.stdout:
        m = _TOKENS.search(line)
        if m:   # strip the token list before parsing: 13 M Python ints would take gigabytes
            parts.append(m.group(1).replace(",", " "))
            line = line[:m.start()] + line[m.end():]
        o = json.loads(line)
        if o["type"] == "doc":
            docs.append(o)
        elif o["type"] == "chunk":
            chunks.append((o["doc"], o["start"], o["end"]))
            ids.append(o["id"])
    if dump.wait():
        raise RuntimeError(f"retro index dump {kb} failed ({dump.returncode})")
    cmd = [retro, "tokenizer", "decode"] + (["--tokenizer", tok] if os.path.exists(tok) else [])
    dec = subprocess.run(cmd, input=" ".join(parts).encode(), stdout=subprocess.PIPE, check=True)
    raw = dec.stdout
    if len(raw) != sum(e - s for _, s, e in chunks):
        raise RuntimeError(f"{kb}: the chunks' tokens decode to {len(raw)} bytes, their spans cover "
                           f"{sum(e - s for _, s, e in chunks)}")
    pieces, pos = {}, 0   # doc id -> [(start, bytes)]: each chunk's text, cut from the decoded run
    for doc, start, end in chunks:
        pieces.setdefault(doc, []).append((start, raw[pos:pos + end - start]))
        pos += end - start
    offset, out, pos = {}, [], 0
    for d in docs:
        at = 0
        for start, b in sorted(pieces.get(d["id"], [])):
            if start != at:
                raise RuntimeError(f"{kb}: {d['path']}: its chunks do not cover its text (gap at byte {at})")
            out.append(b)
            at += len(b)
        if at != d["bytes"]:
            raise RuntimeError(f"{kb}: {d['path']}: its chunks cover {at} bytes of {d['bytes']}")
        offset[d["id"]] = pos
        pos += at
    c = Corpus(docs, chunks, b"".join(out), offset)
    c.chunk_ids = ids
    return c
