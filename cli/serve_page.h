/*
 * serve_page.h - the search page of `retro serve` (GET /): cli/serve_page.html,
 * one self-contained file (HTML, CSS, JavaScript; no external resources),
 * compiled into the binary. The build (cmake/embed_file.cmake) writes the
 * bytes into serve_page.c in the build directory; it is regenerated when the
 * HTML changes.
 *
 * rtr_serve_page holds rtr_serve_page_len bytes of UTF-8 (no terminating NUL
 * is counted, though one follows); static storage, never freed, read-only.
 */
#ifndef RTR_SERVE_PAGE_H
#define RTR_SERVE_PAGE_H

#include <stddef.h>

extern const unsigned char rtr_serve_page[];
extern const size_t rtr_serve_page_len;

#endif
