/* fuzz_safetensors.c - safetensors files (lib/safetensors.c) and model checkpoints in them (model/ckpt.c):
 * header, offsets, dtypes, shapes, metadata, the configuration and every tensor. */
#include "fuzz_util.h"
#include "lib/safetensors.h"
#include "model/ckpt.h"
#include "retriever/retriever.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rtr_safetensors *st = NULL;
    int rc = rtr_st_parse(data, size, "fuzz.safetensors", &st);
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        return 0;
    }
    uint32_t align;
    (void)rtr_ckpt_align_meta(rtr_st_meta(st, "align"), "fuzz.safetensors", &align);
    int retriever = -1;
    if (rtr_ckpt_retriever_meta(rtr_st_meta(st, "retriever"), "fuzz.safetensors", &retriever) == RTR_OK)
        FUZZ_CHECK(retriever >= RTR_SEARCH_VECTOR && retriever <= RTR_SEARCH_HYBRID);
    for (int with_train = 0; with_train < 2; with_train++) {
        rtr_model *m = NULL;
        /* the context of 64 keeps the activations small whatever the file says */
        rc = rtr_ckpt_from_st(st, "fuzz.safetensors", 1, 64, with_train, &m);
        if (rc) FUZZ_FAILED_WELL(rc);
        else FUZZ_CHECK(rtr_model_nparams(m) > 0);
        rtr_model_free(m);
    }
    rtr_st_free(st);
    return 0;
}
