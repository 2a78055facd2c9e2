/* embed_http_factory.c - makes the http embedder a knowledge base recorded:
 * {"kind":"http","url":...,"model":...,"dim":N}. The API key is never
 * recorded; it comes from the environment (RETRO_EMBED_API_KEY). */
#include <jansson.h>
#include <stdlib.h>

#include "index/embed.h"
#include "lib/status.h"

int rtr_http_embedder_from_desc(const char *kb_dir, const char *desc, rtr_embedder **out) {
    json_error_t err;
    json_t *j = json_loads(desc, 0, &err);
    const char *url = NULL, *model = NULL;
    json_int_t dim = 0;
    int rc;
    if (!j || json_unpack(j, "{s:s, s?s, s:I}", "url", &url, "model", &model, "dim", &dim) || dim <= 0 || dim > 65536) {
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: bad http embedder description", kb_dir);
    } else {
        rtr_http_embedder_opts o = {.url = url, .model = model, .dim = (uint32_t)dim,
                                    .api_key = getenv("RETRO_EMBED_API_KEY")};
        rc = rtr_http_embedder_new(&o, out);
    }
    json_decref(j);
    return rc;
}
