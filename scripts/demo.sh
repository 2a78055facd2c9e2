#!/usr/bin/env bash
# scripts/demo.sh - the main job on the bundled corpus (63 State of the Union
# addresses in datasets/sotu), from a bare machine:
#   set-up and build; a knowledge base over the corpus, indexed and searched;
#   a small baseline and a small RETRO model trained here by retro on the
#   training split; an evaluation table (bits per byte with retrieval on and
#   off, the baseline, the leakage filter), the leakage case that shows the
#   mechanism; a generation that shows its sources; a grounded answer.
# RETRO_DEMO_STEPS (default 300) sets the training steps of each model; a
# second run reuses the trained models.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
t0=$(date +%s)
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target retro >/dev/null
retro=build/release/retro
out=${RETRO_DEMO_DIR:-build/demo}
kb=$out/kb
steps=${RETRO_DEMO_STEPS:-300}
mkdir -p "$out"
say() { printf '\n== %s\n' "$*"; }

say "retro index add $kb datasets/sotu"
$retro index add "$kb" datasets/sotu
say "retro index info $kb"
$retro index info "$kb"
say "retro index build $kb"
$retro index build "$kb"
say "retro search $kb \"the space program and landing on the moon\" -k 2"
$retro search "$kb" "the space program and landing on the moon" -k 2

# the two models share the decoder's size and the training tokens; the RETRO
# model reads 2 neighbours of every 64-token chunk (never from the chunk's own
# address, never from a held-out one) and, as a curriculum, its own text in
# half of the chunks (--self-neighbours 0.5: see docs/results.md)
model=(--val-frac 0.1 --context 256 --width 128 --layers 4 --heads 4 --batch 8 --lr 2e-3 --warmup 30
       --steps "$steps" --eval-every "$steps" --eval-seqs 16 --save-every 0)
train() {   # DIR MODE [extra...]: trains unless DIR holds a finished run of the same length
    local dir=$1 mode=$2     # that this build of retro can load
    shift 2
    if [ -f "$dir/model.safetensors" ] && grep -q "\"step\":$steps,\"val_loss\"" "$dir/log.jsonl" 2>/dev/null &&
        $retro generate "$dir" "The" -n 1 --no-retrieval > /dev/null 2>&1; then
        echo "(trained already: $dir)"
        return
    fi
    rm -rf "$dir"
    $retro train "$kb" -o "$dir" --mode "$mode" "${model[@]}" "$@"
}
say "retro train $kb -o $out/base --mode baseline --steps $steps"
train "$out/base" baseline
say "retro train $kb -o $out/retro --steps $steps --self-neighbours 0.5"
train "$out/retro" retro --self-neighbours 0.5

say "retro eval --model $out/retro --model $out/base --kb $kb --split val"
echo "(held-out addresses; neighbours never from a held-out address)"
$retro eval --model "$out/retro" --model "$out/base" --kb "$kb" --split val --val-frac 0.1
say "retro eval --model $out/retro --kb $kb --split val --leak"
echo "(the leakage case: the held-out addresses are in the knowledge base and may be retrieved)"
$retro eval --model "$out/retro" --kb "$kb" --split val --val-frac 0.1 --leak

say "retro generate $out/retro --kb $kb \"The state of our union\" -n 120 --show-neighbours"
$retro generate "$out/retro" --kb "$kb" "In this message I want to speak about the economy, about jobs and about taxes." \
    -n 120 --seed 1 --show-neighbours
say "retro ask $out/retro --kb $kb \"What did the president say about the space program?\""
$retro ask "$out/retro" --kb "$kb" "What did the president say about the space program?" -n 40

echo
echo "demo finished in $(( $(date +%s) - t0 )) s"
