#!/usr/bin/env bash
# copyright_corpus.sh - a corpus with real near-duplicates for docs/results.md:
# the copyright file of every installed Debian package (licence texts recur
# across packages, as boilerplate does in users' own documents).
#   bash tests/bench/copyright_corpus.sh OUT_DIR
# Identical files are kept once; files over 1 MB (Boost's 2 MB list of its
# sources, a third of the whole) are left out. The set depends on the packages
# installed; docs/results.md names the count it was measured with.
set -euo pipefail
out=${1:?usage: copyright_corpus.sh OUT_DIR}
mkdir -p "$out"
for d in /usr/share/doc/*; do
    f="$d/copyright"
    [ -f "$f" ] || continue
    [ "$(stat -L -c %s "$f")" -le 1000000 ] || continue
    cp -L "$f" "$out/$(basename "$d").txt"
done
cd "$out"
md5sum -- *.txt | sort | awk 'seen[$1]++ { print $2 }' | xargs -r rm --
echo "$(ls | wc -l) documents, $(cat -- *.txt | wc -c) bytes in $out"
