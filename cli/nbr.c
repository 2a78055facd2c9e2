/* nbr.c - retrieval for the model from a knowledge base (see nbr.h). */
#include "cli/nbr.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/kb.h"
#include "index/store.h"
#include "lib/alloc.h"
#include "lib/io.h"
#include "lib/status.h"
#include "model/ckpt.h"

#define M RTR_CHUNK_TOKENS
#define R (2 * RTR_CHUNK_TOKENS)

int cli_nbr_open(cli_nbr *n, const char *kb_dir, const char *model_tok_hash, int k) {
    memset(n, 0, sizeof *n);
    n->K = k;
    n->min_score = CLI_NO_MIN_SCORE;
    int rc = rtr_kb_open(kb_dir, 0, NULL, NULL, &n->kb);
    if (!rc && model_tok_hash && strcmp(model_tok_hash, rtr_kb_tokenizer_hash(n->kb)))
        rc = rtr_seterr(RTR_E_MISMATCH, "%s: its tokenizer (%s) is not the model's (%s)", kb_dir,
                        rtr_kb_tokenizer_hash(n->kb), model_tok_hash);
    if (!rc) rc = rtr_retriever_open(n->kb, NULL, &n->r);
    if (rc) cli_nbr_close(n);
    else n->tok = rtr_kb_tokenizer(n->kb);
    return rc;
}

void cli_nbr_close(cli_nbr *n) {
    rtr_retriever_close(n->r);
    rtr_kb_close(n->kb);
    n->r = NULL;
    n->kb = NULL;
}

/* One line per neighbour: its source and the start of its text. */
static void show(cli_nbr *n, int64_t chunk, const int64_t *ids, const float *dist, const uint32_t *tok) {
    rtr_store_txn *t = NULL;
    if (rtr_store_read_begin(rtr_kb_store(n->kb), &t)) return;
    fprintf(n->show, "[retrieval for chunk %" PRId64 "]\n", chunk);
    for (int j = 0; j < n->K; j++) {
        rtr_chunk c;
        rtr_doc d;
        if (ids[j] >= 0 && 1 - dist[j] / 2 < n->min_score) {
            fprintf(n->show, "  %d. (withheld: score %.3f below --min-score)\n", j + 1, 1 - dist[j] / 2);
            continue;
        }
        if (ids[j] < 0 || rtr_store_get_chunk(t, (uint64_t)ids[j], &c) || rtr_store_get_doc(t, c.doc_id, &d)) {
            fprintf(n->show, "  %d. (none)\n", j + 1);
            continue;
        }
        rtr_buf text = {0};
        uint32_t len = 0;
        while (len < 24 && tok[j * R + len] != UINT32_MAX) len++;
        rtr_tokenizer_decode(n->tok, tok + j * R, len, &text);
        for (size_t i = 0; i < text.len; i++)
            if (text.data[i] == '\n' || text.data[i] == '\r' || text.data[i] == '\t') text.data[i] = ' ';
        fprintf(n->show, "  %d. %.*s bytes %" PRIu64 "-%" PRIu64 " (chunk %" PRIu64 ", distance %.3f): \"%.*s...\"\n",
                j + 1, (int)d.path_len, d.path, c.byte_start, c.byte_end, c.id, dist[j], (int)text.len,
                (const char *)text.data);
        rtr_buf_free(&text);
    }
    rtr_store_txn_end(t);
}

int cli_parse_min_score(const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v >= -1 && v <= 1)) return -1;
    *out = v;
    return 0;
}

int cli_nbr_retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr) {
    cli_nbr *c = ctx;
    return cli_nbr_retrieve_scored(c, chunks, n, first, c->align ? NULL : nbr, NULL, c->align ? nbr : NULL, c->align);
}

/* dst (nk * R) = tok with UINT32_MAX as -1; neighbours scoring below min_score withheld. */
static void put_tokens(int32_t *dst, const uint32_t *tok, const float *s, size_t nk, float min_score) {
    for (size_t i = 0; i < nk; i++)
        for (int t = 0; t < R; t++)
            dst[i * R + t] = s[i] < min_score || tok[i * R + t] == UINT32_MAX ? -1 : (int32_t)tok[i * R + t];
}

int cli_nbr_retrieve_scored(cli_nbr *c, const int32_t *chunks, int n, int64_t first, int32_t *nbr, float *score,
                            int32_t *aligned, uint32_t align_run) {
    size_t nk = (size_t)n * c->K;
    uint32_t *q = rtr_malloc((size_t)n * M * sizeof *q), *tok = rtr_malloc(nk * R * sizeof *tok);
    uint64_t *self = rtr_malloc((size_t)n * sizeof *self);
    int64_t *ids = rtr_malloc(nk * sizeof *ids);
    float *dist = rtr_malloc(nk * sizeof *dist), *s = rtr_malloc(nk * sizeof *s);
    int rc = q && tok && self && ids && dist && s ? RTR_OK : rtr_seterr(RTR_E_NOMEM, "retrieval: out of memory");
    for (size_t i = 0; !rc && i < (size_t)n * M; i++) q[i] = (uint32_t)chunks[i];
    for (int i = 0; !rc && i < n; i++) self[i] = c->exclude_doc;
    if (!rc)
        rc = rtr_retriever_neighbours(c->r, q, NULL, (size_t)n, (uint32_t)c->K, c->exclude_doc ? self : NULL,
                                      c->exclude, c->n_exclude, ids, dist, tok, UINT32_MAX);
    for (size_t i = 0; !rc && i < nk; i++) {
        s[i] = ids[i] < 0 ? NAN : 1 - dist[i] / 2;
        if (score) score[i] = s[i];
    }
    if (!rc && nbr) put_tokens(nbr, tok, s, nk, c->min_score);
    for (int i = 0; !rc && c->show && i < n; i++) show(c, first + i, ids + (size_t)i * c->K, dist + (size_t)i * c->K,
                                                       tok + (size_t)i * c->K * R);
    if (!rc && aligned) {
        rc = rtr_retriever_align(c->r, q, NULL, (size_t)n, (uint32_t)c->K, ids, align_run, tok, UINT32_MAX, NULL);
        if (!rc) put_tokens(aligned, tok, s, nk, c->min_score);
    }
    rtr_free(q);
    rtr_free(tok);
    rtr_free(self);
    rtr_free(ids);
    rtr_free(dist);
    rtr_free(s);
    return rc;
}

int cli_align_meta(const char *v, const char *file, uint32_t *align) {
    *align = 0;
    if (!v) return RTR_OK;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > M) return rtr_seterr(RTR_E_CORRUPT, "%s: bad align \"%s\"", file, v);
    *align = (uint32_t)x;
    return RTR_OK;
}

int cli_load_model(const char *dir, const char *tok_path, int max_B, int T, rtr_model **m, rtr_tokenizer **tok,
                   char **tok_hash, uint32_t *align) {
    *m = NULL;
    *tok = NULL;
    *tok_hash = NULL;
    if (!rtr_path_exists(dir))
        return rtr_seterr(RTR_E_NOTFOUND, "%s: no such model (a checkpoint directory written by retro train)", dir);
    rtr_safetensors *st = NULL;
    char *own = rtr_path_join(dir, "tokenizer.rtok");
    int rc = rtr_ckpt_load(dir, max_B, T, 0, m, &st);
    if (!rc) {
        const char *p = tok_path ? tok_path : own && rtr_path_exists(own) ? own : NULL;
        if (!p) rc = rtr_seterr(RTR_E_NOTFOUND, "%s: no tokenizer.rtok beside the model (give --tokenizer)", dir);
        else rc = rtr_tokenizer_load(p, tok);
    }
    if (!rc) {
        char hex[33];
        rtr_tokenizer_hash(*tok, hex);
        const char *want = rtr_st_meta(st, "tokenizer");
        if (want && strcmp(want, hex))
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: the model was trained with tokenizer %s, not %s", dir, want, hex);
        else if ((int)rtr_tokenizer_vocab_size(*tok) != rtr_model_cfg(*m)->V)
            rc = rtr_seterr(RTR_E_MISMATCH, "%s: the tokenizer's %u tokens are not the model's %d", dir,
                            rtr_tokenizer_vocab_size(*tok), rtr_model_cfg(*m)->V);
        else if (!(*tok_hash = strdup(hex))) rc = rtr_seterr(RTR_E_NOMEM, "out of memory");
    }
    uint32_t al = 0;
    if (!rc) rc = cli_align_meta(rtr_st_meta(st, "align"), dir, &al);
    if (align) *align = al;
    if (rc) {
        rtr_model_free(*m);
        rtr_tokenizer_free(*tok);
        *m = NULL;
        *tok = NULL;
    }
    rtr_st_free(st);
    free(own);
    return rc;
}
