/* fuzz_manifest.c - a knowledge base's manifest.json (index/kb.c), its "index" section
 * (index/vectors.c) and the embedder description it records (index/embed.c). */
#include "fuzz_util.h"
#include "index/embed.h"
#include "index/kb.h"
#include "index/vectors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rtr_kb_manifest mf;
    int rc = rtr_kb_manifest_parse(data, size, "fuzz/manifest.json", &mf);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        return 0;
    }
    json_t *ix = json_object_get(mf.json, "index");
    rtr_vectors_section sec;
    if (ix && !(rc = rtr_vectors_section_parse(ix, "fuzz/manifest.json", &sec))) {
        FUZZ_CHECK(sec.n_shards >= 1 && sec.n_shards <= 1024);
        rtr_embedder *e = NULL;   /* the kinds that need files find none here */
        if (!rtr_embedder_from_desc("/nonexistent-retro-fuzz", sec.embedder_desc, &e)) rtr_embedder_free(e);
        rtr_vectors_section_free(&sec);
    } else if (ix) {
        FUZZ_FAILED_WELL(rc);
    }
    json_decref(mf.json);
    return 0;
}
