#!/usr/bin/env bash
# datasets/kernel.sh - the billion-token corpus: the C sources, headers and documentation of two
# Linux kernels as Debian packages them (linux-source-6.1 and linux-source-6.12), unpacked side by
# side. Two versions of one tree hold many files that are the same or nearly so, as web-scale data
# does; the paper's retrieval database is of that kind.
#
#   bash datasets/kernel.sh [DIR]      # default $RETRO_CACHE/kernel (~/.cache/retro/kernel)
#
# Installs the two packages with apt-get (root or sudo; each is a .tar.xz of about 140 MB in
# /usr/src), unpacks them into DIR/linux-source-6.1 and DIR/linux-source-6.12 (1.5 and 1.7 GB,
# 165,211 files), and prints the directory. A second run finds them there. What they hold with
# retro's default tokenizer (`retro index add`, 2026-12-07, docs/benchmarks.md): 162,977
# documents, 2.08 B tokens, 32.6 M chunks of 2.7 GB of text (one kernel alone passes 1 B); the
# 1,523 files the ingest skips (binary, empty, JSON without text records) are named by `retro
# index info`. linux-source-6.1 alone holds 0.97 B tokens (15.2 M chunks); with linux-source-6.12's
# Documentation, fs and net it passes a billion: 1.05 B tokens, 16.5 M chunks, the knowledge base of
# tests/bench/run_billion.sh.
set -euo pipefail
cache=${RETRO_CACHE:-$HOME/.cache/retro}
dir=${1:-$cache/kernel}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
versions=(6.1 6.12)
missing=()
for v in "${versions[@]}"; do
    [ -f "/usr/src/linux-source-$v.tar.xz" ] || missing+=("linux-source-$v")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "kernel.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$dir"
for v in "${versions[@]}"; do
    if [ ! -f "$dir/linux-source-$v/.unpacked" ]; then
        echo "kernel.sh: unpacking linux-source-$v into $dir" >&2
        rm -rf "$dir/linux-source-$v"
        tar -xJf "/usr/src/linux-source-$v.tar.xz" -C "$dir"
        touch "$dir/linux-source-$v/.unpacked"
    fi
done
printf '%s\n' "$dir"
