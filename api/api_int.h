/*
 * api_int.h - what the public API's files share: the handles behind
 * include/retro.h's opaque types. The API is a thin layer over index/,
 * retriever/ and model/ that wires retrieval into the model; cli/ and the
 * server call it and hold no engine logic.
 */
#ifndef RTR_API_INT_H
#define RTR_API_INT_H

#include <pthread.h>

#include "include/retro.h"
#include "index/kb.h"
#include "model/ckpt.h"
#include "retriever/live.h"
#include "retriever/retriever.h"

/* A retriever and the calls using it: a build switches the knowledge base
 * to a new one while searches go on with the old, closed by the last. */
typedef struct rtr_api_held {
    rtr_retriever *r;
    int refs;            /* users, and 1 while it is the knowledge base's current one */
} rtr_api_held;

struct retro_kb {
    rtr_kb *kb;            /* NULL for a knowledge base of partitions (ps) */
    struct rtr_parts *ps;  /* a knowledge base of partitions, opened to read: what reads partitions works on it
                            * (retro_train, retro_search in one process); every other call says so
                            * (rtr_api_plain) */
    struct rtr_multi *multi;   /* ps's searches, opened by the first (under smu) */
    pthread_mutex_t wmu;   /* writers (add, remove, build) one at a time */
    pthread_mutex_t rmu;   /* guards cur and the references */
    pthread_mutex_t smu;   /* one search at a time inside the index and the embedder */
    rtr_api_held *cur;     /* opened on first use; replaced when a build commits */
};

struct retro_model {
    rtr_loaded_model lm;
    int max_B;
};

/* RTR_OK for a knowledge base of one partition; for one of partitions, RTR_E_INVALID naming what
 * (a call) does not read partitions yet. */
int rtr_api_plain(const retro_kb *kb, const char *what);

/* A reference to kb's current retriever (opened now if it is not yet);
 * every success is paired with rtr_api_release. */
int rtr_api_acquire(retro_kb *kb, rtr_api_held **out);
void rtr_api_release(retro_kb *kb, rtr_api_held *h);   /* NULL-safe */

/* rtr_live_retrieve under kb->smu: the retrieval callback of a generation (ctx: an rtr_api_live_ctx). */
typedef struct rtr_api_live_ctx {
    retro_kb *kb;
    rtr_live *lv;
} rtr_api_live_ctx;
int rtr_api_live_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr);
/* The same for the generations of a batch step (rtr_retrieve_many_fn): one rtr_live_retrieve_many
 * under the lock when they share a knowledge base, else one call each. */
int rtr_api_live_retrieve_many(void *const *ctx, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr);

/* Frees the strings of one search result. */
void rtr_api_source_free(retro_source *s);

/* A live-retrieval context for model m over kb (tokenizers checked), holding
 * a reference to the retriever: rtr_api_release(kb, *held) when done. */
int rtr_api_live(retro_model *m, retro_kb *kb, rtr_live *out, rtr_api_held **held);

#endif
