# cmake/embed_file.cmake - writes the bytes of a file into a C source, for
# files shipped inside the binary (the search page of `retro serve`):
#
#   cmake -DIN=cli/serve_page.html -DOUT=build/serve_page.c -DNAME=rtr_serve_page \
#         -DHEADER=cli/serve_page.h -P cmake/embed_file.cmake
#
# OUT defines `const unsigned char NAME[]` (the bytes, then a NUL that is not
# counted) and `const size_t NAME_len` (the number of bytes), and includes
# HEADER, which declares them. Pure CMake (file(READ ... HEX)): no xxd needed.
foreach(v IN ITEMS IN OUT NAME HEADER)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "embed_file.cmake: -D${v}=... is required")
  endif()
endforeach()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
# 16 bytes a line: first cut the hex into lines, then make each pair a literal
# (CMake's regular expressions have no {n}: the 32 digits are spelled out)
string(REPEAT "[0-9a-f]" 32 line)
string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "\n$" "" bytes "${bytes}")
get_filename_component(in_name "${IN}" NAME)
file(WRITE "${OUT}.tmp"
"/* Generated from ${in_name} by cmake/embed_file.cmake; do not edit. */
#include \"${HEADER}\"

const unsigned char ${NAME}[] = {
${bytes}
0x00};
const size_t ${NAME}_len = ${n_bytes};
")
file(RENAME "${OUT}.tmp" "${OUT}")
