/* fuzz_hits.c - hits as the ranks of an mpirun job send them (retriever/multi.c), unpacked, then packed
 * again: what unpacks must pack back to the same bytes. */
#include <string.h>

#include "fuzz_util.h"
#include "lib/buf.h"
#include "retriever/multi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rtr_hits h = {0};
    size_t used = 0;
    int rc = rtr_hits_unpack(data, size, "fuzz", &h, &used);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
    } else {
        FUZZ_CHECK(used <= size);
        for (size_t i = 0; i < h.n; i++) FUZZ_CHECK(h.items[i].path && h.items[i].title && h.items[i].text);
        rtr_buf b = {0};
        /* a string that holds a NUL packs shorter than it came (cut there): compare where none does */
        if (!rtr_hits_pack(&h, &b) && b.len == used) FUZZ_CHECK(memcmp(b.data, data, used) == 0);
        rtr_buf_free(&b);
    }
    rtr_hits_free(&h);
    return 0;
}
