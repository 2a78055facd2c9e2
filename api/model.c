/* model.c - the public API's models, generation with live retrieval, and answers with sources (include/retro.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "index/parts.h"
#include "retriever/multi.h"
#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/status.h"
#include "model/generate.h"
#include "model/infer.h"
#include "retriever/quote.h"
#include "retriever/reader.h"

int retro_model_load(const char *dir, const retro_model_opts *o, retro_model **out) {
    *out = NULL;
    retro_model *m = rtr_calloc(1, sizeof *m);
    if (!m) return RTR_E_NOMEM;
    m->max_B = o && o->max_batch > 0 ? o->max_batch : 8;
    int rc = rtr_ckpt_load_model(dir, o ? o->tokenizer : NULL, m->max_B, 0, &m->lm);
    if (rc) {
        rtr_free(m);
        return rc;
    }
    *out = m;
    return RTR_OK;
}

void retro_model_free(retro_model *m) {
    if (!m) return;
    rtr_loaded_model_free(&m->lm);
    rtr_free(m);
}

void retro_model_get_info(const retro_model *m, retro_model_info *out) {
    const rtr_model_config *c = rtr_model_cfg(m->lm.model);
    *out = (retro_model_info){c->n_cca > 0, c->T, c->V, c->L, c->C, c->K, m->lm.align,
                              rtr_model_nparams(m->lm.model), m->lm.tok_hash, m->lm.retriever};
}

/* One numbering of the retrievers: the public API's, the retriever's and the checkpoint's. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(RETRO_SEARCH_DEFAULT, RTR_SEARCH_DEFAULT) && SAME(RETRO_SEARCH_VECTOR, RTR_SEARCH_VECTOR) &&
               SAME(RETRO_SEARCH_LEXICAL, RTR_SEARCH_LEXICAL) && SAME(RETRO_SEARCH_HYBRID, RTR_SEARCH_HYBRID),
               "RETRO_SEARCH_* are RTR_SEARCH_*");
_Static_assert(SAME(RTR_RETRIEVER_VECTOR, RTR_SEARCH_VECTOR) && SAME(RTR_RETRIEVER_LEXICAL, RTR_SEARCH_LEXICAL) &&
               SAME(RTR_RETRIEVER_HYBRID, RTR_SEARCH_HYBRID), "RTR_RETRIEVER_* are RTR_SEARCH_*");
#undef SAME

const char *retro_search_mode_name(int mode) { return rtr_ckpt_retriever_name(mode); }

int retro_search_mode_parse(const char *name) { return rtr_ckpt_retriever_parse(name); }

int retro_tokenize(const retro_model *m, const char *text, size_t len, int32_t **tokens, size_t *n) {
    *tokens = NULL;
    *n = 0;
    rtr_encoder *enc = NULL;
    rtr_u32vec ids = {0};
    int rc = rtr_encoder_new(m->lm.tok, &enc);
    if (!rc) rc = rtr_encoder_encode(enc, (const uint8_t *)text, len, &ids);
    rtr_encoder_free(enc);
    if (rc) {
        rtr_u32vec_free(&ids);
        return rc;
    }
    *tokens = (int32_t *)ids.data;   /* ids below 2^31: the vocabulary is smaller */
    *n = ids.len;
    return RTR_OK;
}

int retro_detokenize(const retro_model *m, const int32_t *tokens, size_t n, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    uint32_t V = rtr_tokenizer_vocab_size(m->lm.tok);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= V)
            return rtr_seterr(RTR_E_INVALID, "token %d at %zu is outside the vocabulary (%u)", tokens[i], i, V);
    rtr_buf b = {0};
    int rc = rtr_tokenizer_decode(m->lm.tok, (const uint32_t *)tokens, n, &b);
    if (!rc) rc = rtr_buf_terminate(&b);
    if (rc) {
        rtr_buf_free(&b);
        return rc;
    }
    *text = (char *)b.data;
    *len = b.len;
    return RTR_OK;
}

void retro_free(void *p) { rtr_free(p); }

/* RTR_E_MISMATCH unless kb's chunks are in m's tokens. */
static int same_tokenizer(const retro_model *m, retro_kb *kb) {
    char h[33];
    if (kb->kb) snprintf(h, sizeof h, "%s", rtr_kb_tokenizer_hash(kb->kb));
    else rtr_tokenizer_hash(rtr_parts_tokenizer(kb->ps), h);
    if (!strcmp(m->lm.tok_hash, h)) return RTR_OK;
    return rtr_seterr(RTR_E_MISMATCH, "%s: its tokenizer (%s) is not the model's (%s)",
                      kb->kb ? rtr_kb_dir(kb->kb) : rtr_parts_dir(kb->ps), h, m->lm.tok_hash);
}

int rtr_api_live(retro_model *m, retro_kb *kb, rtr_live *out, rtr_api_held **held) {
    memset(out, 0, sizeof *out);
    *held = NULL;
    int rc = same_tokenizer(m, kb);
    if (!rc && kb->ps) {   /* a knowledge base of partitions: neighbours from every one (vector) */
        pthread_mutex_lock(&kb->smu);
        if (!kb->multi) rc = rtr_multi_open(kb->ps, NULL, &kb->multi);
        pthread_mutex_unlock(&kb->smu);
        out->m = kb->multi;
    } else if (!rc) {
        rc = rtr_api_acquire(kb, held);
    }
    if (!rc && *held) out->r = (*held)->r;
    out->k = (uint32_t)rtr_model_cfg(m->lm.model)->K;
    out->min_score = -INFINITY;
    out->align = m->lm.align;
    out->mode = m->lm.retriever;
    if (!rc && out->r && rtr_model_cfg(m->lm.model)->n_cca) {
        char what[48];
        snprintf(what, sizeof what, "the model's %s neighbours", rtr_ckpt_retriever_name(out->mode));
        if ((rc = rtr_retriever_mode_ready(out->r, out->mode, what))) {
            rtr_api_release(kb, *held);
            *held = NULL;
        }
    }
    return rc;
}

/* --- generation ----------------------------------------------------------------- */
void retro_gen_opts_default(retro_gen_opts *o) {
    memset(o, 0, sizeof *o);
    rtr_gen_opts g;
    rtr_gen_opts_default(&g);
    o->max_tokens = g.max_tokens;
    o->temperature = g.temperature;
    o->top_k = g.top_k;
    o->top_p = g.top_p;
    o->seed = g.seed;
    o->min_score = -INFINITY;
}

void retro_gen_result_free(retro_gen_result *r) {
    if (!r) return;
    rtr_free(r->text);
    rtr_free(r->logprobs);
    memset(r, 0, sizeof *r);
}

/* rtr_live's report, handed on as retro_neighbour. */
static void on_retrieval(void *ctx, int64_t chunk, const rtr_live_hit *hits, uint32_t k) {
    const retro_gen_opts *o = ctx;
    retro_neighbour nb[64];
    for (uint32_t j = 0; j < k && j < 64; j++)
        nb[j] = (retro_neighbour){hits[j].chunk_id, hits[j].doc_id, hits[j].path, hits[j].path_len, hits[j].byte_start,
                                  hits[j].byte_end, hits[j].distance, hits[j].score, hits[j].withheld, hits[j].tokens};
    o->on_retrieval(o->ctx, chunk, nb, k < 64 ? k : 64);
}

/* One generation of the API: its session, live retrieval and loop. */
typedef struct api_gen {
    retro_model *m;
    const retro_gen_opts *o;
    int retrieval;
    rtr_live lv;
    rtr_api_live_ctx lctx;
    rtr_api_held *held;
    rtr_session *s;
    rtr_gen *g;
} api_gen;

static void api_gen_free(api_gen *x) {
    rtr_gen_free(x->g);
    rtr_session_free(x->s);
    if (x->retrieval) rtr_api_release(x->o->kb, x->held);
    memset(x, 0, sizeof *x);
}

/* Sets up x for o (which must outlive it) and feeds the prompt. */
static int api_gen_begin(retro_model *m, const char *prompt, size_t len, const retro_gen_opts *o, api_gen *x) {
    memset(x, 0, sizeof *x);
    if (o->n_stop < 0 || o->n_stop > RTR_GEN_MAX_STOP)
        return rtr_seterr(RTR_E_INVALID, "generate: at most %d stop sequences", RTR_GEN_MAX_STOP);
    x->m = m;
    x->o = o;
    rtr_gen_opts g = {o->max_tokens, o->temperature, o->top_k, o->top_p, o->seed, {0}, o->n_stop,
                      o->on_text, o->ctx, o->cancel, o->ignore_end, o->logprobs};
    for (int i = 0; i < o->n_stop; i++) g.stop[i] = o->stop[i];
    x->retrieval = rtr_model_cfg(m->lm.model)->n_cca > 0 && o->kb;
    int rc = x->retrieval ? rtr_api_live(m, o->kb, &x->lv, &x->held) : RTR_OK;
    if (x->retrieval) {
        x->lv.min_score = o->min_score;
        if (o->on_retrieval) {
            x->lv.report = on_retrieval;
            x->lv.report_ctx = (void *)o;
        }
    }
    if (!rc) rc = rtr_session_new(m->lm.model, &x->s);
    x->lctx = (rtr_api_live_ctx){o->kb, &x->lv};
    if (!rc && x->retrieval) {
        rtr_session_set_retrieval(x->s, rtr_api_live_retrieve, &x->lctx);
        rtr_session_set_retrieval_many(x->s, rtr_api_live_retrieve_many);
    }
    if (!rc) rc = rtr_gen_begin(x->s, m->lm.tok, prompt, len, &g, &x->g);
    if (rc) api_gen_free(x);
    return rc;
}

/* The result of x's generation (rc: how its loop ended); frees x. */
static int api_gen_finish(api_gen *x, int rc, retro_gen_result *out) {
    memset(out, 0, sizeof *out);
    rtr_gen_result res;
    if (!rc) {
        rc = rtr_gen_finish(x->g, &res);
        x->g = NULL;
    }
    if (!rc) {
        rtr_session_times t;
        rtr_session_times_get(x->s, &t);
        *out = (retro_gen_result){res.text, res.len, res.prompt_tokens, res.tokens, res.stopped, x->retrieval,
                                  t.retrievals, res.tokens_per_s, t.retrieve, t.encode, t.total, NULL, 0};
        _Static_assert(RTR_GEN_MAX_LOGPROBS == 20, "retro_token_logprob holds 20 alternatives");
        if (res.n_lp && !(out->logprobs = rtr_calloc(res.n_lp, sizeof *out->logprobs))) rc = RTR_E_NOMEM;
        for (size_t i = 0; !rc && i < res.n_lp; i++) {
            const rtr_token_lp *a = &res.lp[i];
            retro_token_logprob *b = &out->logprobs[i];
            *b = (retro_token_logprob){a->token, a->logprob, a->offset, a->n_top, {0}, {0}};
            memcpy(b->top, a->top, sizeof b->top);
            memcpy(b->top_logprob, a->top_lp, sizeof b->top_logprob);
        }
        out->n_logprobs = rc ? 0 : res.n_lp;
        rtr_free(res.lp);
        if (rc) retro_gen_result_free(out);
    }
    api_gen_free(x);
    return rc;
}

int retro_generate(retro_model *m, const char *prompt, size_t len, const retro_gen_opts *o, retro_gen_result *out) {
    memset(out, 0, sizeof *out);
    retro_gen_opts dflt;
    if (!o) {
        retro_gen_opts_default(&dflt);
        o = &dflt;
    }
    api_gen x;
    int rc = api_gen_begin(m, prompt, len, o, &x);
    if (rc) return rc;
    const float *logits = NULL;
    int32_t t;
    while ((rc = rtr_gen_next(x.g, logits, &t)) == 1)
        if ((rc = rtr_session_feed(x.s, &t, 1, &logits))) break;
    return api_gen_finish(&x, rc < 0 ? rc : RTR_OK, out);
}

/* --- generations decoded together ------------------------------------------------------ */
enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_ENDED };

typedef struct batch_slot {
    int state;
    api_gen x;
    int32_t next;             /* the token to feed at the next step */
    int rc;                   /* how it ended */
    char err[512];
    retro_gen_result res;
} batch_slot;

struct retro_batch {
    retro_model *m;
    int n;
    batch_slot *slots;
    rtr_batch *b;
    rtr_session **ss;
    int32_t *toks;
    int *idx;
    const float **logits;
};

int retro_batch_new(retro_model *m, int slots, retro_batch **out) {
    *out = NULL;
    if (slots < 1 || slots > 256) return rtr_seterr(RTR_E_INVALID, "batch: 1 to 256 slots");
    retro_batch *b = rtr_calloc(1, sizeof *b);
    if (!b) return RTR_E_NOMEM;
    b->m = m;
    b->n = slots;
    b->slots = rtr_calloc((size_t)slots, sizeof *b->slots);
    b->ss = rtr_calloc((size_t)slots, sizeof *b->ss);
    b->toks = rtr_calloc((size_t)slots, sizeof *b->toks);
    b->idx = rtr_calloc((size_t)slots, sizeof *b->idx);
    b->logits = rtr_calloc((size_t)slots, sizeof *b->logits);
    int rc = b->slots && b->ss && b->toks && b->idx && b->logits ? RTR_OK : RTR_E_NOMEM;
    if (!rc) rc = rtr_batch_new(m->lm.model, slots, &b->b);
    if (rc) {
        retro_batch_free(b);
        return rc;
    }
    *out = b;
    return RTR_OK;
}

void retro_batch_free(retro_batch *b) {
    if (!b) return;
    for (int i = 0; b->slots && i < b->n; i++) {
        if (b->slots[i].state == SLOT_RUNNING) api_gen_free(&b->slots[i].x);
        retro_gen_result_free(&b->slots[i].res);
    }
    rtr_batch_free(b->b);
    rtr_free(b->slots);
    rtr_free(b->ss);
    rtr_free(b->toks);
    rtr_free(b->idx);
    rtr_free(b->logits);
    rtr_free(b);
}

int retro_batch_active(const retro_batch *b) {
    int n = 0;
    for (int i = 0; i < b->n; i++) n += b->slots[i].state == SLOT_RUNNING;
    return n;
}

/* Slot i's generation ended (rc: its loop's status): its result waits for retro_batch_take. */
static void slot_end(batch_slot *sl, int rc) {
    sl->rc = api_gen_finish(&sl->x, rc, &sl->res);
    if (sl->rc) snprintf(sl->err, sizeof sl->err, "%s", rtr_errdetail());
    sl->state = SLOT_ENDED;
}

/* Samples slot i's next token from logits: it goes on, or ends. */
static void slot_pick(batch_slot *sl, const float *logits) {
    int r = rtr_gen_next(sl->x.g, logits, &sl->next);
    if (r != 1) slot_end(sl, r < 0 ? r : RTR_OK);
}

int retro_batch_add(retro_batch *b, const char *prompt, size_t len, const retro_gen_opts *o, int *slot) {
    *slot = -1;
    int i = 0;
    while (i < b->n && b->slots[i].state != SLOT_FREE) i++;
    if (i == b->n) return rtr_seterr(RTR_E_BUSY, "batch: all %d slots are taken", b->n);
    batch_slot *sl = &b->slots[i];
    memset(sl, 0, sizeof *sl);
    int rc = api_gen_begin(b->m, prompt, len, o, &sl->x);
    if (rc) return rc;
    sl->state = SLOT_RUNNING;
    slot_pick(sl, NULL);   /* the first token, from the prompt's logits */
    *slot = i;
    return RTR_OK;
}

int retro_batch_step(retro_batch *b, int *active) {
    int n = 0;
    for (int i = 0; i < b->n; i++) {
        if (b->slots[i].state != SLOT_RUNNING) continue;
        b->idx[n] = i;
        b->ss[n] = b->slots[i].x.s;
        b->toks[n++] = b->slots[i].next;
    }
    int rc = n ? rtr_batch_feed(b->b, b->ss, b->toks, n, b->logits) : RTR_OK;
    if (rc) {   /* a retrieval failed: the generations of this step end with its status */
        for (int k = 0; k < n; k++) slot_end(&b->slots[b->idx[k]], rc);
    }
    for (int k = 0; !rc && k < n; k++) slot_pick(&b->slots[b->idx[k]], b->logits[k]);
    if (active) *active = retro_batch_active(b);
    return RTR_OK;
}

int retro_batch_take(retro_batch *b, int slot, retro_gen_result *out) {
    memset(out, 0, sizeof *out);
    if (slot < 0 || slot >= b->n || b->slots[slot].state == SLOT_FREE)
        return rtr_seterr(RTR_E_INVALID, "batch: slot %d holds no generation", slot);
    batch_slot *sl = &b->slots[slot];
    if (sl->state == SLOT_RUNNING) return rtr_seterr(RTR_E_BUSY, "batch: slot %d is still generating", slot);
    int rc = sl->rc;
    if (rc) rtr_seterr(rc, "%s", sl->err);
    else *out = sl->res;
    memset(sl, 0, sizeof *sl);
    return rc;
}

/* --- answers with sources ----------------------------------------------------------- */
void retro_ask_opts_default(retro_ask_opts *o) {
    memset(o, 0, sizeof *o);
    o->passages = 3;
    o->quotes = 2;
    retro_gen_opts_default(&o->gen);
    o->gen.max_tokens = 64;
    o->gen.temperature = 0;
}

void retro_answer_free(retro_answer *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_quotes; i++) rtr_free((char *)a->quotes[i].text);
    rtr_free(a->quotes);
    a->quotes = NULL;
    a->n_quotes = 0;
    retro_gen_result_free(&a->gen);
    retro_results_free(&a->sources);
    rtr_free((char *)a->generated_by);
    a->generated_by = NULL;
}

/* The prompt: passages (each chunk and its continuation), the question, the
 * cue; passages are dropped, last first, until prompt and answer fit the
 * context. *n_used gets how many stay. */
static int ask_prompt(const rtr_tokenizer *tok, const retro_results *hits, const char *question, size_t budget,
                      rtr_buf *prompt, size_t *n_used) {
    rtr_encoder *enc = NULL;
    int rc = rtr_encoder_new(tok, &enc);
    size_t used = hits->n;
    while (!rc) {
        prompt->len = 0;
        for (size_t i = 0; i < used && !rc; i++) {
            const retro_source *h = &hits->items[i];
            rc = rtr_buf_printf(prompt, "%s%s\n", h->text, h->continuation ? h->continuation : "");
        }
        if (!rc) rc = rtr_buf_printf(prompt, "Question: %s\nAnswer:", question);
        rtr_u32vec ids = {0};
        if (!rc) rc = rtr_encoder_encode(enc, prompt->data, prompt->len, &ids);
        size_t n = ids.len;
        rtr_u32vec_free(&ids);
        if (rc || n <= budget || used == 0) break;
        used--;
    }
    rtr_encoder_free(enc);
    *n_used = used;
    return rc;
}

/* The sentences of the sources that best answer question (retriever/quote.h). */
static int ask_quotes(const char *question, const retro_results *src, size_t max, retro_answer *out) {
    rtr_passage *p = rtr_calloc(src->n + 1, sizeof *p);
    rtr_buf *text = rtr_calloc(src->n + 1, sizeof *text);
    rtr_quote *q = rtr_calloc(max + 1, sizeof *q);
    size_t n = 0;
    int rc = p && text && q ? RTR_OK : RTR_E_NOMEM;
    for (size_t i = 0; !rc && i < src->n; i++) {   /* a chunk and its continuation are one span of text */
        const retro_source *s = &src->items[i];
        rc = rtr_buf_printf(&text[i], "%s%s", s->text, s->continuation ? s->continuation : "");
        p[i] = (rtr_passage){(const char *)text[i].data, text[i].len, s->byte_start};
    }
    if (!rc) rc = rtr_quotes(question, strlen(question), p, src->n, max, q, &n);
    if (!rc && n && !(out->quotes = rtr_calloc(n, sizeof *out->quotes))) rc = RTR_E_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        char *t = rtr_strndup(p[q[i].passage].text + q[i].off, q[i].len);
        if (!t) {
            rc = RTR_E_NOMEM;
            break;
        }
        out->quotes[i] = (retro_quote){t, q[i].passage, src->items[q[i].passage].path, q[i].byte_start, q[i].byte_end,
                                       q[i].score};
        out->n_quotes = i + 1;
    }
    for (size_t i = 0; text && i < src->n; i++) rtr_buf_free(&text[i]);
    rtr_free(text);
    rtr_free(p);
    rtr_free(q);
    return rc;
}

/* retro_ask with o->reader_url: the quotes as with a model; every passage
 * and the question go to the reader (retriever/reader.h), whose answer is
 * out->gen.text. */
static int ask_reader(retro_kb *kb, const char *question, const retro_ask_opts *o, retro_answer *out) {
    retro_search_opts so = {.k = o->passages ? o->passages : 3, .continuation = 1};
    int rc = retro_search(kb, question, strlen(question), &so, &out->sources);
    out->in_prompt = out->sources.n;
    if (!rc) rc = ask_quotes(question, &out->sources, o->quotes ? o->quotes : 2, out);
    if (!rc && !(out->generated_by = rtr_reader_url_shown(o->reader_url))) rc = RTR_E_NOMEM;
    rtr_reader_passage *p = rc ? NULL : rtr_calloc(out->sources.n + 1, sizeof *p);
    if (!rc && !p) rc = RTR_E_NOMEM;
    for (size_t i = 0; !rc && i < out->sources.n; i++)
        p[i] = (rtr_reader_passage){out->sources.items[i].text, out->sources.items[i].continuation};
    const char *key = getenv("RETRO_READER_KEY");
    rtr_reader_opts ro = {.url = o->reader_url, .model = o->reader_model, .completions = o->reader_completions,
                          .api_key = key && *key ? key : NULL, .max_tokens = o->gen.max_tokens,
                          .temperature = o->gen.temperature};
    rtr_reader_reply r = {0};
    if (!rc) rc = rtr_reader_ask(&ro, question, p, out->sources.n, &r);
    if (!rc) {   /* the reader's answer takes the place of the model's generation */
        out->gen.text = r.text;
        out->gen.len = r.len;
        r.text = NULL;
        out->gen.prompt_tokens = r.prompt_tokens > 0 && r.prompt_tokens < INT32_MAX ? (int)r.prompt_tokens : 0;
        out->gen.tokens = r.completion_tokens > 0 && r.completion_tokens < INT32_MAX ? (int)r.completion_tokens : 0;
        out->gen.stopped = r.length ? "length" : "stop";
        out->gen.total_s = r.seconds;
        out->gen.tokens_per_s = r.seconds > 0 ? out->gen.tokens / r.seconds : 0;
    }
    rtr_reader_reply_free(&r);
    rtr_free(p);
    if (rc) retro_answer_free(out);
    return rc;
}

int retro_ask(retro_model *m, retro_kb *kb, const char *question, const retro_ask_opts *o, retro_answer *out) {
    memset(out, 0, sizeof *out);
    retro_ask_opts dflt;
    if (!o) {
        retro_ask_opts_default(&dflt);
        o = &dflt;
    }
    if (!*question) return rtr_seterr(RTR_E_INVALID, "ask: the question is empty");
    if (o->reader_url) return ask_reader(kb, question, o, out);
    int rc = same_tokenizer(m, kb);   /* before the search: its passages go to the model */
    if (rc) return rc;
    if (!(out->generated_by = rtr_strdup("model"))) return RTR_E_NOMEM;
    retro_search_opts so = {.k = o->passages ? o->passages : 3, .continuation = 1};
    rc = retro_search(kb, question, strlen(question), &so, &out->sources);
    rtr_buf prompt = {0};
    size_t used = 0;
    int T = rtr_model_cfg(m->lm.model)->T;
    size_t budget = o->gen.max_tokens < T ? (size_t)(T - o->gen.max_tokens) : 0;
    if (!rc) rc = ask_prompt(m->lm.tok, &out->sources, question, budget, &prompt, &used);
    out->in_prompt = used;
    if (!rc) rc = ask_quotes(question, &out->sources, o->quotes ? o->quotes : 2, out);
    /* the answer stops at the next question or paragraph */
    const char *stops[RTR_GEN_MAX_STOP];
    retro_gen_opts g = o->gen;
    int ns = 0;
    for (int i = 0; i < g.n_stop && ns < RTR_GEN_MAX_STOP - 2; i++) stops[ns++] = g.stop[i];
    stops[ns++] = "\nQuestion:";
    stops[ns++] = "\n\n";
    g.stop = stops;
    g.n_stop = ns;
    g.kb = o->no_retrieval ? NULL : kb;
    if (!rc) rc = retro_generate(m, (const char *)prompt.data, prompt.len, &g, &out->gen);
    if (!rc) {   /* the answer without the space the cue leaves */
        size_t skip = 0;
        while (skip < out->gen.len && out->gen.text[skip] == ' ') skip++;
        memmove(out->gen.text, out->gen.text + skip, out->gen.len - skip + 1);
        out->gen.len -= skip;
    }
    rtr_buf_free(&prompt);
    if (rc) retro_answer_free(out);
    return rc;
}
