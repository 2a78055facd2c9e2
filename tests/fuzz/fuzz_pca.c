/* fuzz_pca.c - a learned projection's file (index/embed_pca.c), parsed, then applied to a vector.
 * Its last 8 bytes are an XXH64 of the rest; the harness rewrites them when the first byte is odd, so
 * that the fuzzer gets past it. */
#include <math.h>
#include <string.h>

#include "fuzz_util.h"
#include "index/embed_pca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int reseal = data[0] & 1;
    data++, size--;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (reseal && size >= 16) fuzz_reseal_xxh64(b, size);
    rtr_pca p;
    int rc = rtr_pca_parse(b, size, "fuzz.pca", &p);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
    } else {
        FUZZ_CHECK(p.dout >= 1 && p.dout <= p.din && p.din <= RTR_PCA_MAX_DIM);
        float *x = calloc(p.din, sizeof *x), *y = calloc(p.dout, sizeof *y);
        if (x && y) {
            x[0] = 1;
            rtr_pca_apply(&p, x, 1, y);
        }
        free(x);
        free(y);
        rtr_pca_free(&p);
    }
    free(b);
    return 0;
}
