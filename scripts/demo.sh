#!/usr/bin/env bash
# scripts/demo.sh - the main job on the bundled corpus: set-up, build, then
# build a knowledge base over datasets/sotu, show what is in it, index it and
# search it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target retro >/dev/null
retro=build/release/retro
kb=${RETRO_DEMO_KB:-build/demo-kb}

echo "== retro index add $kb datasets/sotu"
$retro index add "$kb" datasets/sotu
echo
echo "== retro index info $kb"
$retro index info "$kb"
echo
echo "== retro index show $kb (the first chunks, with their sources)"
$retro index show "$kb"
echo
echo "== retro index build $kb"
$retro index build "$kb"
echo
echo "== retro search $kb \"the space program and landing on the moon\" -k 3"
$retro search "$kb" "the space program and landing on the moon" -k 3
