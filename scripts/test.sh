#!/usr/bin/env bash
# scripts/test.sh - the whole test suite, as CI runs it:
#   1. set-up (idempotent: packages, FAISS C API, reference npm packages);
#   2. Release build with warnings as errors, all tests;
#   3. address + undefined-behaviour sanitizer build, all tests, built without Open MPI (the
#      Release build has it: both builds are tested);
#   4. every libFuzzer harness for a few seconds (tests/fuzz/run.sh; clang).
# Usage: bash scripts/test.sh [ctest args...]   (e.g. -R store)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh --tests
# the set-up installed chromium and puppeteer-core: the browser test must run, not skip
export RETRO_REQUIRE_BROWSER=1
jobs=$(nproc)

echo "== Release (-Werror) =="
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DRETRO_WERROR=ON -DRETRO_NATIVE=OFF -DRETRO_MPI=ON >/dev/null
cmake --build build/release -j"$jobs"
(cd build/release && ctest --output-on-failure -j"$jobs" "$@")

echo "== Sanitizers (address, undefined) =="
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DRETRO_SANITIZE=ON -DRETRO_WERROR=ON -DRETRO_NATIVE=OFF \
    -DRETRO_MPI=OFF >/dev/null
cmake --build build/asan -j"$jobs"
# LMDB and OpenBLAS keep memory until exit on purpose; leaks are checked in our code
# by the unit tests' own frees, so leak detection stays on.
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -j"$jobs" "$@")

echo "== Fuzzing (${RETRO_FUZZ_SECONDS:-8} s a harness) =="
bash tests/fuzz/run.sh "${RETRO_FUZZ_SECONDS:-8}"
