/*
 * check.h - `retro index check`: everything a knowledge base holds, walked
 * and checked against everything else: the chunk store's records
 * (rtr_store_check, every chunk decoded against its text), the manifest,
 * the vector index's files against their checksums, and its vectors against
 * the chunks they claim (every id a chunk at or below the watermark, each
 * once; every live chunk there has a vector; a sample of chunks, embedded
 * again, finds its own vector).
 */
#ifndef RTR_CHECK_H
#define RTR_CHECK_H

#include <stdint.h>

#include "index/kb.h"
#include "index/lexical.h"
#include "index/store.h"

typedef struct rtr_kb_check_report {
    rtr_store_check_report store;
    int indexed;                /* the manifest names an index */
    uint64_t vectors;           /* in the shards */
    uint64_t stale;             /* vectors of deleted chunks (`retro index build --compact` removes them) */
    uint64_t unindexed;         /* live chunks above the watermark (the next build embeds them) */
    uint64_t sampled, found;    /* chunks embedded again, and those that found their own vector first */
    rtr_lex_check_report lexical;   /* the lexical index (index/lexical.h) */
    uint64_t problems;          /* all of them, the store's included */
} rtr_kb_check_report;

/* Checks kb (see above); report (may be NULL) gets one line per problem.
 * Returns RTR_OK when every check ran, whatever it found (out->problems);
 * RTR_E_NOMEM, RTR_E_LMDB when a check could not run. */
int rtr_kb_check(rtr_kb *kb, rtr_check_fn report, void *ctx, rtr_kb_check_report *out);

#endif
