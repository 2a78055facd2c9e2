/*
 * api_int.h - what the public API's files share: the handles behind
 * include/retro.h's opaque types. The API is a thin layer over index/,
 * retriever/ and model/ that wires retrieval into the model; cli/ and the
 * server call it and hold no engine logic.
 */
#ifndef RTR_API_INT_H
#define RTR_API_INT_H

#include "include/retro.h"
#include "index/kb.h"
#include "model/ckpt.h"
#include "retriever/live.h"
#include "retriever/retriever.h"

struct retro_kb {
    rtr_kb *kb;
    rtr_retriever *r;   /* opened on first use; closed when the index changes */
};

struct retro_model {
    rtr_loaded_model lm;
    int max_B;
};

/* kb's retriever, opened now if it is not yet. */
int rtr_api_retriever(retro_kb *kb, rtr_retriever **out);

/* Frees the strings of one search result. */
void rtr_api_source_free(retro_source *s);

/* A live-retrieval context for model m over kb (tokenizers checked). */
int rtr_api_live(retro_model *m, retro_kb *kb, rtr_live *out);

#endif
