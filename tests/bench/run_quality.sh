#!/usr/bin/env bash
# run_quality.sh - search quality of retro (vector, lexical and hybrid search through the public
# API, tests/bench/bench_quality) against SQLite FTS5's BM25 over the same chunks
# (tests/bench/quality/fts5.py), on questions written from two documentation trees
# (tests/bench/quality/make_questions.py: page titles, section headings, passages of 40 words with
# a fifth of them dropped):
#   python: Debian's python3.11-doc, its HTML pages (/usr/share/doc/python3.11/html/**/*.html);
#   kernel: linux-source-6.1's Documentation/ in reStructuredText and plain text (data the
#           question writer was not tuned on).
# Prints a markdown table per tree: task x system -> top-1, top-5, MRR, p50/p99 ms of one search.
# A mode the knowledge base refuses (no lexical index yet) shows "-" and the error below.
#
#   bash tests/bench/run_quality.sh [--fresh] [--whole-tree] [--no-kernel] [BUILD_DIR]
#
#   BUILD_DIR      holds retro and tests/bench/bench_quality (default build/release)
#   --fresh        rebuild the knowledge bases (otherwise kept, and brought up to date with
#                  `retro index add` and `retro index build`, in the work directory:
#                  $RETRO_CACHE/quality if RETRO_CACHE is set, else build/quality)
#   --whole-tree   index the python tree as it is (also _sources/*.rst.txt, a reST copy of every
#                  page, and _static/*.js) instead of its HTML pages only
#   --no-kernel    the python tree only
#   K=10           results per search
#   QUESTIONS=200  questions a task; SEED=20261201 draws them (another seed: questions nobody has seen)
# Installs nothing: needs python3.11-doc and linux-source-6.1 (bash scripts/setup.sh --bench).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
fresh=0 whole=0 kernel=1 build=
for a in "$@"; do
    case $a in
    --fresh) fresh=1 ;;
    --whole-tree) whole=1 ;;
    --no-kernel) kernel=0 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_quality: unknown option $a" >&2; exit 2 ;;
    *) build=$a ;;
    esac
done
build=$(cd "${build:-$src/build/release}" && pwd)
retro=$build/retro
bench=$build/tests/bench/bench_quality
py=/usr/bin/python3
qdir=$src/tests/bench/quality
k=${K:-10}
nq=${QUESTIONS:-200}
seed=${SEED:-20261201}
work=${RETRO_CACHE:+$RETRO_CACHE/quality}
work=${work:-$src/build/quality}
pydoc=/usr/share/doc/python3.11/html
ksrc=/usr/src/linux-source-6.1.tar.xz

# --- what it needs ----------------------------------------------------------------------
[ -x "$retro" ] && [ -x "$bench" ] ||
    { echo "run_quality: build $build first (targets retro and bench_quality)" >&2; exit 1; }
[ -x "$py" ] || { echo "run_quality: $py missing: apt-get install python3" >&2; exit 1; }
"$py" -c 'import sqlite3; sqlite3.connect(":memory:").execute("CREATE VIRTUAL TABLE t USING fts5(x)")' 2>/dev/null ||
    { echo "run_quality: $py's sqlite3 has no FTS5" >&2; exit 1; }
[ -d "$pydoc" ] || { echo "run_quality: $pydoc missing: apt-get install python3.11-doc (or bash scripts/setup.sh --bench)" >&2; exit 1; }
if [ $kernel = 1 ] && [ ! -f "$ksrc" ]; then
    echo "run_quality: $ksrc missing (apt-get install linux-source-6.1): the kernel tree is left out" >&2
    kernel=0
fi
mkdir -p "$work"
cd "$work"
log() { printf 'run_quality: %s\n' "$*" >&2; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(date -u +%F); $("$retro" --version 2>/dev/null | head -1 || true)"

# run_corpus NAME FORMAT SOURCE...: the knowledge base NAME.kb over SOURCE..., its questions in
# NAME.q/, every system's figures in NAME.results.jsonl and their ranks in NAME.ranks/.
run_corpus() {
    local name=$1 fmt=$2
    shift 2
    [ $fresh = 1 ] && rm -rf "$name.kb"
    rm -rf "$name.q" "$name.ranks" && mkdir -p "$name.ranks"
    local t0=$SECONDS
    "$retro" index add "$name.kb" "$@" --quiet > "$name.add.txt"
    "$retro" index build "$name.kb" --quiet > /dev/null
    log "$name: knowledge base ready in $((SECONDS - t0)) s"
    "$py" "$qdir/make_questions.py" "$name.kb" --format "$fmt" --out "$name.q" --retro "$retro" \
        --n "$nq" --seed "$seed"
    : > "$name.results.jsonl"
    for task in titles headings perturbed; do
        for mode in vector lexical hybrid; do
            t0=$SECONDS
            "$bench" "$name.kb" "$name.q/$task.jsonl" $mode "$k" --ranks "$name.ranks/$mode.$task" |
                "$py" -c 'import json, sys; o = json.loads(sys.stdin.read()); o.update(task=sys.argv[1], system="retro " + o["mode"]); print(json.dumps(o))' \
                "$task" >> "$name.results.jsonl"
            [ -s "$name.ranks/$mode.$task" ] || rm -f "$name.ranks/$mode.$task"
            log "$name: $task, $mode: $((SECONDS - t0)) s"
        done
    done
    t0=$SECONDS
    "$py" "$qdir/fts5.py" "$name.kb" "$name.q/titles.jsonl" "$name.q/headings.jsonl" "$name.q/perturbed.jsonl" \
        --k "$k" --retro "$retro" --ranks "$name.ranks/fts5" >> "$name.results.jsonl"
    for f in "$name.ranks/fts5"/*.ranks; do mv "$f" "$name.ranks/fts5.$(basename "$f" .ranks)"; done
    rmdir "$name.ranks/fts5"
    log "$name: fts5: $((SECONDS - t0)) s"
    "$py" - "$name" "$k" "$("$retro" index info "$name.kb" --json)" <<'EOF'
import collections, glob, json, os, sys
name, k, info = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rows = [json.loads(line) for line in open(f"{name}.results.jsonl")]
order = ["titles", "headings", "perturbed", "retro vector", "retro lexical", "retro hybrid", "fts5"]
rows.sort(key=lambda r: (order.index(r["task"]), order.index(r["system"])))
print(f"\n### {name}: {info['documents']:,} documents, {info['chunks']:,} chunks of "
      f"{info['chunk_tokens']} tokens; {rows[0]['questions'] if rows else 0} questions a task, k = {k}\n")
print("| task | system | top-1 | top-5 | MRR | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- | --- | --- |")
f = lambda v, fmt: "-" if v is None else format(v, fmt)
errors = {}
for r in rows:
    print(f"| {r['task']} | {r['system']} | {f(r['top1'], '.3f')} | {f(r['top5'], '.3f')} | {f(r['mrr'], '.3f')} "
          f"| {f(r['p50_ms'], '.1f')} | {f(r['p99_ms'], '.1f')} |")
    if r.get("error"):
        errors.setdefault(r["system"], r["error"])
if errors:
    print()
for s, e in errors.items():
    print(f"{s}: not run ({e})  ")
# questions that no system answered within k, kept in NAME.unanswered.jsonl to read
answered = collections.defaultdict(bool)
systems = collections.defaultdict(list)
for path in sorted(glob.glob(f"{name}.ranks/*")):
    system, task = os.path.basename(path).split(".", 1)
    systems[task].append(system)
    for line in open(path):
        qid, rank = line.split()
        answered[qid] |= rank != "0"
with open(f"{name}.unanswered.jsonl", "w") as out:
    counts = []
    for task in ("titles", "headings", "perturbed"):
        missed = [q for q in map(json.loads, open(f"{name}.q/{task}.jsonl")) if not answered[q["id"]]]
        out.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in missed)
        counts.append(f"{task} {len(missed)}")
print(f"\nanswered by no system within k ({', '.join(sorted(set(sum(systems.values(), []))))}): "
      f"{', '.join(counts)} (in {os.path.abspath(name)}.unanswered.jsonl)")
EOF
}

if [ $whole = 1 ]; then
    run_corpus python-tree html "$pydoc"
else
    mapfile -d '' pages < <(find "$pydoc" -name '*.html' -print0 | sort -z)
    run_corpus python html "${pages[@]}"
fi
if [ $kernel = 1 ]; then
    if [ $fresh = 1 ] || [ ! -d linux-source-6.1/Documentation ]; then
        rm -rf linux-source-6.1
        tar -xJf "$ksrc" linux-source-6.1/Documentation
    fi
    run_corpus kernel rst "$work/linux-source-6.1/Documentation"
fi
