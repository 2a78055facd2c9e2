#!/usr/bin/env bash
# scripts/demo.sh - the first run, from a bare Debian 12 machine: set-up and
# build, then a short guided tour of what retro does with text that has
# near-duplicates, the case retrieval helps:
#   a knowledge base over the headers of GCC's C++ library (the 152 files of
#   /usr/include/c++/12/bits, which the set-up installs with the compiler:
#   map and multimap, set and multiset, list and forward_list are documented
#   and written nearly alike), indexed and searched; a small baseline trained
#   here on 90% of the files and RETRO-fitted (decoder frozen, aligned
#   neighbours); bits per byte on the held-out 10%, whose own text is never
#   retrieved, with retrieval on and off and the leakage filter; a
#   generation that shows its neighbours; an answer quoted from its sources.
# The recipe and its figures (two seeds) are in docs/results.md ("The demo").
# RETRO_DEMO_DIR (default build/demo) holds the knowledge base and the
# models; a second run reuses the trained models. RETRO_DEMO_BUILD (default
# build/release) is the build directory. RETRO_DEMO_CORPUS and RETRO_DEMO_SEED
# (default 1) run the same recipe on another tree or seed (docs/results.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
t0=$(date +%s)
bash scripts/setup.sh
build=${RETRO_DEMO_BUILD:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target retro >/dev/null
retro=$here/$build/retro
out=${RETRO_DEMO_DIR:-build/demo}
mkdir -p "$out"
cd "$out"       # the models are called base and fit in every table below
corpus=${RETRO_DEMO_CORPUS:-/usr/include/c++/12/bits}
[ -d "$corpus" ] || { echo "demo: no $corpus (the set-up installs it with g++)" >&2; exit 1; }
echo "set-up and build: $(( $(date +%s) - t0 )) s"

n=0
step() {   # TITLE WHAT-TO-LOOK-AT
    n=$((n + 1))
    printf '\n== %d/7 %s\n-- %s\n' "$n" "$1" "$2"
}
show() { printf '$ retro %s\n' "$*" >&2; "$retro" "$@"; }   # the command line on stderr: it stays when stdout is cut

step "a knowledge base over GCC's C++ library headers" \
     "every 64-token chunk of every file is embedded (vectors) and indexed by its words (BM25)"
rm -rf kb
show index add kb "$corpus" | tail -n 2
show index build kb --search-mode hybrid

step "search" \
     "a doc comment that eight files share word for word: each hit names its file, byte span, score and the side that found it"
show search kb "Erases elements according to the provided key. Returns the number of elements erased." -k 2 | cut -c 1-124

# the recipe (docs/results.md, "The demo"): the same 4-layer decoder for both,
# trained on the same tokens in the same order; the fit trains only the
# neighbour encoder and the cross-attention, reading 2 neighbours of every
# 64-token chunk, each re-cut to line up with it (--align), never from the
# chunk's own file nor from a held-out one; in a share of the chunks, falling
# from half to none, the last neighbour is the chunk itself (a curriculum)
common=(--val-frac 0.1 --context 256 --width 128 --layers 4 --heads 4 --batch 8 --lr 2e-3 --warmup 30
        --steps 600 --eval-every 600 --eval-seqs 16 --save-every 0 --seed "${RETRO_DEMO_SEED:-1}")
train() {   # DIR MODE [extra...]: trains unless DIR holds this run, finished, by this build
    local dir=$1 mode=$2
    shift 2
    local recipe
    recipe="$mode ${common[*]} $* $(sha1sum < "$retro" | cut -c 1-12)"
    [ "$mode" = fit ] && recipe="$recipe; base: $(cat base/demo-recipe)"
    if [ -f "$dir/model.safetensors" ] && [ "$(cat "$dir/demo-recipe" 2>/dev/null)" = "$recipe" ]; then
        echo "(trained already: $out/$dir)"
        return
    fi
    rm -rf "$dir"
    printf '$ retro train kb -o %s --mode %s %s\n' "$dir" "$mode" "$*"
    "$retro" train kb -o "$dir" --mode "$mode" "${common[@]}" "$@"
    echo "$recipe" > "$dir/demo-recipe"
}
step "the baseline: a small decoder trained 600 steps on 90% of the files" \
     "look at its validation bits per byte, on the held-out 10%: the bar to beat"
train base baseline
step "RETRO-fitting the baseline: its decoder frozen, a neighbour encoder and cross-attention trained 600 steps" \
     "neighbours never come from a held-out file: on those, only what other files share can help"
train fit fit --from base --retriever vector --align --self-neighbours 0.5 --self-anneal

step "the honest comparison: bits per byte on the held-out files (lower is better)" \
     "look at fit with retrieval against base; fit with retrieval off is base exactly (its decoder is base's)"
printf '$ retro eval --model fit --model base --kb kb --split val --val-frac 0.1\n'
"$retro" eval --model fit --model base --kb kb --split val --val-frac 0.1 | tee eval.txt |
    grep -v '^(run N'
awk '$1 == "fit" && $2 == "aligned" { on = $NF } $1 == "fit" && $2 == "off" { off = $NF }
     $1 == "base" && $2 == "-" { b = $NF }
     END { if (b) printf "-- fit with retrieval: %.4f bpb, %+.2f%% against base (%.4f); retrieval off: %.4f\n", on, (on / b - 1) * 100, b, off }' eval.txt
awk '$2 == "%" && NF == 6 && $3 > 0 {   # alpha % chunks fit-aligned fit-off base
         printf "-- the %4d chunks sharing at most %5s%% with their neighbours: fit %+.2f%% against base\n", $3, $1, ($4 / $6 - 1) * 100 }' eval.txt
echo "   (the gain comes where a held-out chunk has a near-duplicate in the knowledge base, as the paper's leakage filter shows)"

step "generation with live retrieval: a held-out file's doc comment, continued by base, then by fit" \
     "base guesses the next line; fit writes the @return line that its neighbours (the same comment in other files) hold"
prompt='      /**
       *  @brief Erases elements according to the provided key.
       *  @param  __x  Key of element to be erased.
'
printf '$ retro generate base "<stl_set.h, lines 672-674>" -n 24 --temperature 0\n'
"$retro" generate base "$prompt" -n 24 --temperature 0 2>/dev/null
printf '\n$ retro generate fit --kb kb "<the same>" -n 24 --temperature 0 --show-neighbours\n'
"$retro" generate fit --kb kb "$prompt" -n 24 --temperature 0 --show-neighbours 2> generate.err
printf '\n-- the neighbours fit read while it wrote that:\n'
grep -v '^generate:' generate.err

step "a grounded answer" \
     "the sentences quoted from the sources answer; the model's own text after them is labelled as such"
show ask fit --kb kb "What happens to iterators when an element is erased?" -n 24

echo
echo "demo finished in $(( $(date +%s) - t0 )) s"
