/* fuzz_http.c - responses of an OpenAI-compatible /v1/embeddings server, as the http embedder reads them
 * (index/embed_http.c). The first byte gives the number of inputs (1..8) and whether the dimension is
 * known (4) or learnt from the response. Nothing is sent. */
#include <math.h>

#include "fuzz_util.h"
#include "index/embed.h"

static rtr_embedder *g_e;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!g_e) {
        rtr_http_embedder_opts o = {.url = "http://127.0.0.1:9", .batch = 8};
        if (rtr_http_embedder_new(&o, &g_e)) abort();
    }
    size_t m = (size_t)(data[0] & 7) + 1;
    uint32_t dim = data[0] & 8 ? 4 : 0;
    float out[8 * 4];
    int rc = rtr_http_embedder_parse(g_e, data + 1, size - 1, m, dim ? out : NULL, &dim);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        return 0;
    }
    FUZZ_CHECK(dim >= 1);
    if (dim == 4 && (data[0] & 8))
        for (size_t i = 0; i < m * 4; i++) FUZZ_CHECK(isfinite(out[i]));
    return 0;
}
