#!/usr/bin/env bash
# install_example.sh - `cmake --install` into a fresh prefix puts the libraries,
# retro.h and retrolm.pc there; docs/examples/retro_example.c, built against
# that install through pkg-config (shared, then static), opens a knowledge
# base, searches it with sources and generates with live retrieval.
source "$(dirname "$0")/lib.sh"
BUILD=${RETRO_BUILD_DIR:?set by ctest}
prefix=$WORK/prefix
cmake --install "$BUILD" --prefix "$prefix" >/dev/null
for f in include/retro.h lib/libretrolm.a lib/libretrolm.so lib/pkgconfig/retrolm.pc bin/retro share/retro/tokenizer.rtok; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
# the shared library exports the public API and nothing else
nm -D --defined-only "$prefix/lib/libretrolm.so" | awk '{print $3}' | grep -v '^retro_' | grep -v '^_' > extra.txt || true
[ ! -s extra.txt ] || fail "libretrolm.so exports more than retro_*: $(head -3 extra.txt)"
ok "installed: libraries, header, pkg-config file; only retro_* exported"

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
san=()
[ "${RETRO_SANITIZE:-OFF}" = ON ] && san=(-fsanitize=address,undefined)
cc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$SRC/docs/examples/retro_example.c" \
    $(pkg-config --cflags --libs retrolm) -Wl,-rpath,"$prefix/lib" -o ex_shared
cc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$SRC/docs/examples/retro_example.c" $(pkg-config --cflags retrolm) \
    "$prefix/lib/libretrolm.a" $(pkg-config --static --libs-only-other --libs-only-L retrolm) \
    $(pkg-config --static --libs retrolm | tr ' ' '\n' | grep -v '^-lretrolm$' | tr '\n' ' ') -o ex_static
readelf -d ex_shared > dyn.txt
grep -q "NEEDED.*\[libretrolm.so.0\]" dyn.txt || fail "ex_shared does not need libretrolm.so.0: $(grep NEEDED dyn.txt)"
grep -qE "(RUNPATH|RPATH).*$prefix/lib" dyn.txt || fail "ex_shared does not look in $prefix/lib: $(grep PATH dyn.txt)"
readelf -d ex_static | grep -q "libretrolm" && fail "ex_static needs the shared library"
ok "the example builds against the install: shared and static"

mkdir docs
ls "$SRC"/datasets/sotu/*.txt | head -8 | xargs -I{} cp {} docs/
"$prefix/bin/retro" index add kb docs --quiet >/dev/null
"$prefix/bin/retro" index build kb >/dev/null
"$prefix/bin/retro" train kb -o rtr --steps 3 --context 128 --width 32 --layers 2 --heads 2 --batch 2 \
    --eval-seqs 2 --quiet >/dev/null
for ex in ex_shared ex_static; do
    ./$ex kb rtr "the economy and jobs" > $ex.out 2> $ex.err || { cat $ex.err >&2; fail "$ex failed"; }
    grep -qE "^1\. .*docs/.*\.txt bytes [0-9]+-[0-9]+ score " $ex.out || fail "$ex: no sources: $(head -3 $ex.out)"
    grep -qE "^[0-9]+ tokens \((length|end|stop)\), [1-9][0-9]* chunks retrieved" $ex.out ||
        fail "$ex: no generation with retrieval: $(tail -2 $ex.out)"
    grep -qE "^\[chunk [0-9]+ read .*docs/.*\.txt bytes" $ex.err || fail "$ex: no retrieval reported"
done
cmp -s ex_shared.out ex_static.out || fail "shared and static builds print different results"
ok "the example searches with sources and generates with live retrieval"
# a missing knowledge base: a one-line error through retro_errdetail
expect_fail 1 "nowhere: no such knowledge base" ./ex_shared nowhere rtr "x"
ok "errors reach the caller"
