// tests/bench/gen_corpus.js - a large corpus for the retrieval benchmarks:
// documents made of real sentences (State of the Union, Moby-Dick, Brown)
// drawn with a fixed seed, so every chunk is real text but unique.
//   node tests/bench/gen_corpus.js CACHE_DIR OUT_DIR MEGABYTES
const fs = require("fs");
const path = require("path");
const [cache, out, mb] = [process.argv[2], process.argv[3], Number(process.argv[4] || 250)];
let seed = 0x9e3779b9;
const rnd = n => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed % n; };
const sentences = [];
const take = text => { for (const s of text.split(/(?<=[.!?])\s+/)) if (s.length > 20) sentences.push(s.trim()); };
for (const dir of ["sotu", "moby-dick"])
  for (const f of fs.readdirSync(path.join(cache, "corpora", dir)).sort()) take(fs.readFileSync(path.join(cache, "corpora", dir, f), "utf8"));
for (const f of fs.readdirSync(path.join(cache, "corpora", "brown")).sort())   // "word/tag" -> "word"
  take(fs.readFileSync(path.join(cache, "corpora", "brown", f), "utf8").replace(/(\S+)\/\S+/g, "$1").replace(/\s+/g, " "));
fs.mkdirSync(out, { recursive: true });
const target = mb * 1e6, docBytes = 256 * 1024;
let written = 0, n = 0;
while (written < target) {
  const parts = [];
  let len = 0;
  while (len < docBytes) { const s = sentences[rnd(sentences.length)]; parts.push(s); len += s.length + 1; }
  const text = parts.join(" ") + "\n";
  fs.writeFileSync(path.join(out, `doc${String(n++).padStart(5, "0")}.txt`), text);
  written += Buffer.byteLength(text);
}
console.log(`${n} documents, ${(written / 1e6).toFixed(1)} MB from ${sentences.length} sentences`);
