/*
 * retro.c - the RETRO network (docs/model.md): decoder, neighbour encoder,
 * chunked cross-attention, forward and backward passes, AdamW.
 *
 * Shapes use N = B*T decoder rows, Lc = T/m chunks, NE = B*Lc*K*R encoder
 * rows (one per neighbour token). Every sub-layer is one of three kinds,
 * shared by the decoder and the encoder:
 *   sa:  x + attention(rope(q), rope(k), v) Wproj^T over rmsnorm(x)  (self)
 *   xa:  attention(qin Wq^T, kvin Wk^T, kvin Wv^T) Wproj^T            (cross)
 *   mlp: x + gelu(rmsnorm(x) Wfc^T) Wproj^T
 * The CCA is an xa whose queries are gathered with the causal shift and whose
 * output is scattered back; the encoder's first layer has an xa whose keys
 * are the decoder rows of the neighbour's own chunk (each shared by K
 * neighbours, so they are replicated K times and their gradients summed).
 */
#include "model/retro.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/rng.h"
#include "lib/status.h"
#include "model/ops.h"
#include "model/retro_int.h"

#define PI 3.14159265358979323846

/* --- configuration --------------------------------------------------------------------- */
void rtr_model_config_default(rtr_model_config *cfg, int V) {
    memset(cfg, 0, sizeof *cfg);
    cfg->V = V;
    cfg->C = 256;
    cfg->L = 6;
    cfg->NH = 4;
    cfg->T = 512;
    cfg->m = 64;
    cfg->K = 2;
    cfg->EL = 2;
    cfg->n_cca = -1;
}

int rtr_model_config_finish(rtr_model_config *c) {
    if (c->F == 0) c->F = 4 * c->C;
    if (c->R == 0) c->R = 2 * c->m;
    if (c->EC == 0) c->EC = c->C / 2;
    if (c->ENH == 0) c->ENH = c->NH / 2 > 1 ? c->NH / 2 : 1;
    if (c->EF == 0) c->EF = 4 * c->EC;
    if (c->n_cca < 0) {
        c->n_cca = 0;
        if (c->L >= 12) {
            for (int l = 6; l <= c->L; l += 3) c->cca[c->n_cca++] = l;
        } else if (c->L >= 1) {
            int first = (c->L + 1) / 2;
            c->cca[c->n_cca++] = first;
            if (c->L != first) c->cca[c->n_cca++] = c->L;
        }
    }
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) return rtr_seterr(RTR_E_INVALID, __VA_ARGS__);                                                    \
    } while (0)
    CHECK(c->V >= 2 && c->V <= (1 << 24), "model: vocabulary size %d out of range 2..16777216", c->V);
    CHECK(c->C >= 2 && c->C <= 16384, "model: width %d out of range 2..16384", c->C);
    CHECK(c->L >= 1 && c->L <= RTR_MODEL_MAX_LAYERS, "model: %d layers out of range 1..%d", c->L,
          RTR_MODEL_MAX_LAYERS);
    CHECK(c->NH >= 1 && c->C % c->NH == 0 && (c->C / c->NH) % 2 == 0,
          "model: width %d must split into %d heads of even size", c->C, c->NH);
    CHECK(c->F >= 1 && c->F <= 65536, "model: MLP width %d out of range 1..65536", c->F);
    CHECK(c->m >= 1 && c->m <= 4096, "model: chunk size %d out of range 1..4096", c->m);
    CHECK(c->T >= c->m && c->T % c->m == 0 && c->T <= 65536,
          "model: context %d must be a multiple of the chunk size %d (at most 65536)", c->T, c->m);
    CHECK(c->n_cca >= 0 && c->n_cca <= c->L, "model: %d CCA layers for %d layers", c->n_cca, c->L);
    for (int i = 0; i < c->n_cca; i++)
        CHECK(c->cca[i] >= 1 && c->cca[i] <= c->L && (i == 0 || c->cca[i] > c->cca[i - 1]),
              "model: CCA layers must be ascending within 1..%d", c->L);
    if (c->n_cca > 0) {
        CHECK(c->K >= 1 && c->K <= 64, "model: %d neighbours out of range 1..64", c->K);
        CHECK(c->R >= 1 && c->R <= 4096, "model: neighbour length %d out of range 1..4096", c->R);
        CHECK((int64_t)c->K * c->R <= RTR_ATT_MAX_KEYS, "model: %d neighbours of %d tokens exceed %d keys", c->K,
              c->R, RTR_ATT_MAX_KEYS);
        CHECK(c->EL >= 1 && c->EL <= RTR_MODEL_MAX_LAYERS, "model: %d encoder layers out of range 1..%d", c->EL,
              RTR_MODEL_MAX_LAYERS);
        CHECK(c->EC >= 2 && c->EC <= 16384, "model: encoder width %d out of range", c->EC);
        CHECK(c->ENH >= 1 && c->EC % c->ENH == 0 && (c->EC / c->ENH) % 2 == 0,
              "model: encoder width %d must split into %d heads of even size", c->EC, c->ENH);
        CHECK(c->EF >= 1 && c->EF <= 65536, "model: encoder MLP width %d out of range", c->EF);
    }
#undef CHECK
    return RTR_OK;
}

static const char *CFG_KEYS[] = {"V", "C", "L", "NH", "F", "T", "m", "K", "R", "EL", "EC", "ENH", "EF"};
#define N_CFG_KEYS ((int)(sizeof CFG_KEYS / sizeof CFG_KEYS[0]))

static int *cfg_field(rtr_model_config *c, int i) {
    int *f[] = {&c->V, &c->C, &c->L, &c->NH, &c->F, &c->T, &c->m, &c->K, &c->R, &c->EL, &c->EC, &c->ENH, &c->EF};
    return f[i];
}

char *rtr_model_config_to_json(const rtr_model_config *cfg) {
    rtr_model_config c = *cfg;
    json_t *o = json_object(), *a = json_array();
    if (!o || !a) goto fail;
    for (int i = 0; i < N_CFG_KEYS; i++) json_object_set_new(o, CFG_KEYS[i], json_integer(*cfg_field(&c, i)));
    for (int i = 0; i < c.n_cca; i++) json_array_append_new(a, json_integer(c.cca[i]));
    json_object_set_new(o, "cca", a);
    a = NULL;
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(o);
    return s;
fail:
    json_decref(o);
    json_decref(a);
    return NULL;
}

int rtr_model_config_from_json(const char *text, const char *name, rtr_model_config *cfg) {
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return rtr_seterr(RTR_E_CORRUPT, "%s: model configuration is not a JSON object", name);
    }
    memset(cfg, 0, sizeof *cfg);
    int rc = RTR_OK;
    for (int i = 0; i < N_CFG_KEYS && rc == RTR_OK; i++) {
        json_t *v = json_object_get(o, CFG_KEYS[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 24))
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: model configuration: \"%s\" missing or not a size", name,
                            CFG_KEYS[i]);
        else *cfg_field(cfg, i) = (int)json_integer_value(v);
    }
    json_t *a = json_object_get(o, "cca");
    if (rc == RTR_OK && (!json_is_array(a) || json_array_size(a) > RTR_MODEL_MAX_LAYERS))
        rc = rtr_seterr(RTR_E_CORRUPT, "%s: model configuration: \"cca\" missing or too long", name);
    for (size_t i = 0; rc == RTR_OK && i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > RTR_MODEL_MAX_LAYERS)
            rc = rtr_seterr(RTR_E_CORRUPT, "%s: model configuration: bad CCA layer", name);
        else cfg->cca[cfg->n_cca++] = (int)json_integer_value(v);
    }
    json_decref(o);
    if (rc == RTR_OK && rtr_model_config_finish(cfg) < 0) rc = rtr_errprefix(RTR_E_CORRUPT, "%s", name);
    return rc;
}

const rtr_model_config *rtr_model_cfg(const rtr_model *m) { return &m->cfg; }
size_t rtr_model_nparams(const rtr_model *m) { return m->nparams; }
int rtr_model_ntensors(const rtr_model *m) { return m->ntab; }
const rtr_model_param *rtr_model_tensor(const rtr_model *m, int i) { return i >= 0 && i < m->ntab ? &m->tab[i] : NULL; }
float *rtr_model_params(rtr_model *m) { return m->params; }
float *rtr_model_grads(rtr_model *m) { return m->grads; }
float *rtr_model_adam_m(rtr_model *m) { return m->am; }
float *rtr_model_adam_v(rtr_model *m) { return m->av; }
int64_t *rtr_model_adam_step(rtr_model *m) { return &m->adam_t; }
const float *rtr_model_logits(const rtr_model *m) { return m->logits; }
size_t rtr_model_act_bytes(const rtr_model *m) { return m->act_bytes; }
void rtr_model_freeze_decoder(rtr_model *m, int on) { m->frozen = on; }

const rtr_model_param *rtr_model_find(const rtr_model *m, const char *name) {
    for (int i = 0; i < m->ntab; i++)
        if (!strcmp(m->tab[i].name, name)) return &m->tab[i];
    return NULL;
}

/* Adds a tensor to the table (when tab is not NULL; counts it either way) and returns its index. */
static int add_param(rtr_model *m, const char *name, int64_t d0, int64_t d1, int retrieval) {
    int i = m->ntab++;
    if (!m->tab) m->nparams += (size_t)d0 * (size_t)(d1 ? d1 : 1);
    if (m->tab) {
        rtr_model_param *p = &m->tab[i];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ndim = d1 ? 2 : 1;
        p->shape[0] = d0;
        p->shape[1] = d1;
        p->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
        p->off = m->nparams;
        p->decay = d1 != 0;
        p->retrieval = (uint8_t)retrieval;
        m->nparams += p->n;
    }
    return i;
}

/* The parameter table in the order of docs/model.md; run once to count and
 * once to fill. */
static void build_table(rtr_model *m) {
    const rtr_model_config *c = &m->cfg;
    char nm[32];
    m->ntab = 0;
    m->nparams = 0;
    m->wte = add_param(m, "wte", c->V, c->C, 0);
    for (int l = 0; l < c->L; l++) {
        blk_ix *b = &m->dec[l];
        memset(b, -1, sizeof *b);
#define P(field, suffix, d0, d1, r)                                                                                    \
    (snprintf(nm, sizeof nm, "h.%d.%s", l, suffix), b->field = add_param(m, nm, d0, d1, r))
        P(ln1, "ln1", c->C, 0, 0);
        P(qkv, "attn_qkv", 3 * c->C, c->C, 0);
        P(proj, "attn_proj", c->C, c->C, 0);
        if (m->is_cca[l]) {
            P(xln, "cca_ln", c->C, 0, 1);
            P(xq, "cca_q", c->C, c->C, 1);
            P(xkv, "cca_kv", 2 * c->C, c->EC, 1);
            P(xqb, "cca_qb", c->C, 0, 1);
            P(xkb, "cca_kb", c->C, 0, 1);
            P(xproj, "cca_proj", c->C, c->C, 1);
        }
        P(ln2, "ln2", c->C, 0, 0);
        P(fc, "fc", c->F, c->C, 0);
        P(fcp, "fc_proj", c->C, c->F, 0);
#undef P
    }
    m->lnf = add_param(m, "ln_f", c->C, 0, 0);
    m->ein = m->elnf = -1;
    if (c->n_cca == 0) return;
    m->ein = add_param(m, "enc.in", c->EC, c->C, 1);
    for (int j = 0; j < c->EL; j++) {
        blk_ix *b = &m->enc[j];
        memset(b, -1, sizeof *b);
#define P(field, suffix, d0, d1)                                                                                       \
    (snprintf(nm, sizeof nm, "enc.%d.%s", j, suffix), b->field = add_param(m, nm, d0, d1, 1))
        P(ln1, "ln1", c->EC, 0);
        P(qkv, "attn_qkv", 3 * c->EC, c->EC);
        P(proj, "attn_proj", c->EC, c->EC);
        if (j == 0) {
            P(xln, "x_ln", c->EC, 0);
            P(xq, "x_q", c->EC, c->EC);
            P(xkv, "x_kv", 2 * c->EC, c->C);
            P(xproj, "x_proj", c->EC, c->EC);
        }
        P(ln2, "ln2", c->EC, 0);
        P(fc, "fc", c->EF, c->EC);
        P(fcp, "fc_proj", c->EC, c->EF);
#undef P
    }
    m->elnf = add_param(m, "enc.ln_f", c->EC, 0, 1);
}

/* --- activation layout: a bump allocator run twice (sizes, then pointers) -------------- */
typedef struct bump {
    char *base;
    size_t off;
} bump;

static void *take(bump *b, size_t bytes) {
    size_t at = (b->off + 63) & ~(size_t)63;
    b->off = at + bytes;
    return b->base ? b->base + at : NULL;
}
#define TAKEF(b, n) ((float *)take(b, (size_t)(n) * sizeof(float)))

static void layout_block(bump *b, blk_acts *a, size_t rows, int W, int FW, int NH, size_t Bn, int T, int has_x,
                         size_t xq_rows, size_t xkv_rows, size_t xk_rows, int Tq, int Tk, int gather) {
    a->res = TAKEF(b, rows * W);
    a->sa.ln = TAKEF(b, rows * W);
    a->sa.rstd = TAKEF(b, rows);
    a->sa.q = TAKEF(b, rows * W);
    a->sa.k = TAKEF(b, rows * W);
    a->sa.v = TAKEF(b, rows * W);
    a->sa.att = TAKEF(b, Bn * NH * (size_t)T * T);
    a->sa.y = TAKEF(b, rows * W);
    a->res1 = TAKEF(b, rows * W);
    if (has_x) {
        a->xln = TAKEF(b, rows * W);
        a->xrstd = TAKEF(b, rows);
        a->g = gather ? TAKEF(b, xq_rows * W) : NULL;
        a->xa.q = TAKEF(b, xq_rows * W);
        a->xa.kx = TAKEF(b, xkv_rows * W);
        a->xa.vx = TAKEF(b, xkv_rows * W);
        if (xk_rows != xkv_rows) {
            a->xa.k = TAKEF(b, xk_rows * W);
            a->xa.v = TAKEF(b, xk_rows * W);
        } else {
            a->xa.k = a->xa.kx;
            a->xa.v = a->xa.vx;
        }
        a->xa.att = TAKEF(b, (xq_rows / Tq) * NH * (size_t)Tq * Tk);
        a->xa.y = TAKEF(b, xq_rows * W);
        a->xa.o = TAKEF(b, xq_rows * W);
        a->res2 = TAKEF(b, rows * W);
    }
    a->mlp.ln = TAKEF(b, rows * W);
    a->mlp.rstd = TAKEF(b, rows);
    a->mlp.h = TAKEF(b, rows * FW);
    a->mlp.hg = TAKEF(b, rows * FW);
}

/* Positions the decoder's rotary table covers: the context, the CCA's
 * queries (m .. 2m - 1) and its keys (0 .. R - 1). */
static int rope_dec_positions(const rtr_model_config *c) {
    int n = c->T;
    if (c->n_cca && 2 * c->m > n) n = 2 * c->m;
    if (c->n_cca && c->R > n) n = c->R;
    return n;
}

static void layout_acts(rtr_model *m, bump *b) {
    const rtr_model_config *c = &m->cfg;
    size_t B = (size_t)m->max_B, N = B * c->T, Lc = c->T / c->m;
    size_t NE = B * Lc * c->K * c->R;
    m->rope_dec_cs = TAKEF(b, rtr_rope_table_floats(c->C / c->NH, rope_dec_positions(c)));
    m->rope_enc_cs = c->n_cca ? TAKEF(b, rtr_rope_table_floats(c->EC / c->ENH, c->R)) : NULL;
    for (int l = 0; l < c->L; l++)
        layout_block(b, &m->dl[l], N, c->C, c->F, c->NH, B, c->T, m->is_cca[l], N, NE, NE, c->m, c->K * c->R, 1);
    m->resL = TAKEF(b, N * c->C);
    m->lnf_out = TAKEF(b, N * c->C);
    m->lnf_rstd = TAKEF(b, N);
    m->logits = TAKEF(b, N * c->V);
    m->dlogits = TAKEF(b, N * c->V);
    m->idx = take(b, N * sizeof(int32_t));
    m->targets = take(b, N * sizeof(int32_t));
    if (c->n_cca == 0) return;
    for (int j = 0; j < c->EL; j++)
        layout_block(b, &m->el[j], NE, c->EC, c->EF, c->ENH, B * Lc * c->K, c->R, j == 0, NE, N, NE / c->R * c->m,
                     c->R, c->m, 0);
    m->emb = TAKEF(b, NE * c->C);
    m->eresL = TAKEF(b, NE * c->EC);
    m->E = TAKEF(b, NE * c->EC);
    m->E_rstd = TAKEF(b, NE);
    m->nmask = take(b, NE);
    m->nbr = take(b, NE * sizeof(int32_t));
}

/* --- backward scratch (retro_int.h, bwd_scratch) --------------------------------------- */
/* The slots, in allocation order: eight of (rows, W), two MLP-wide (rows,
 * FW), and the three gradients live through the whole pass. */
enum { SLOT_ROW0, SLOT_ROW1, SLOT_ROW2, SLOT_ROW3, SLOT_ROW4, SLOT_ROW5, SLOT_ROW6, SLOT_ROW7, SLOT_WIDE0, SLOT_WIDE1,
       SLOT_DRES, SLOT_DX, SLOT_DE, N_SLOTS };

/* The size table: floats of each slot, for batches of max_B. */
static void scratch_sizes(const rtr_model *m, size_t sz[N_SLOTS]) {
    const rtr_model_config *c = &m->cfg;
    size_t B = (size_t)m->max_B, N = B * c->T, NE = c->n_cca ? B * (c->T / c->m) * c->K * c->R : 0;
    size_t s = N * (size_t)c->C, wide = N * (size_t)c->F, maxw = c->C > c->EC ? c->C : c->EC;
    if (NE * maxw > s) s = NE * maxw;
    if (NE * (size_t)c->EF > wide) wide = NE * (size_t)c->EF;
    for (int i = SLOT_ROW0; i <= SLOT_ROW7; i++) sz[i] = s;
    sz[SLOT_WIDE0] = sz[SLOT_WIDE1] = wide;
    sz[SLOT_DRES] = sz[SLOT_DX] = N * (size_t)c->C;
    sz[SLOT_DE] = NE * (size_t)c->EC;
}

/* Points the names at the slots. Sharing a slot: ROW0 holds the first
 * gradient of whatever runs (dlnf, cca_dout, demb, sa.dy, mlp.dln); ROW1..6
 * the self- or the cross-attention's; ROW7 the CCA's gathered queries, whose
 * gradient is scattered into dx before the encoder's residual stream needs it. */
static void bind_scratch(bwd_scratch *bs, float *slot[N_SLOTS]) {
    bs->dres = slot[SLOT_DRES];
    bs->dx = slot[SLOT_DX];
    bs->dE = slot[SLOT_DE];
    bs->dlnf = bs->cca_dout = bs->demb = slot[SLOT_ROW0];
    bs->cca_dq = bs->enc_dres = slot[SLOT_ROW7];
    bs->sa = (sa_grads){.dy = slot[SLOT_ROW0], .dq = slot[SLOT_ROW1], .dk = slot[SLOT_ROW2], .dv = slot[SLOT_ROW3],
                        .dq0 = slot[SLOT_ROW4], .dk0 = slot[SLOT_ROW5], .dln = slot[SLOT_ROW6]};
    bs->xa = (xa_grads){.dy = slot[SLOT_ROW1], .dq = slot[SLOT_ROW2], .dk = slot[SLOT_ROW3], .dv = slot[SLOT_ROW4],
                        .dkx = slot[SLOT_ROW5], .dvx = slot[SLOT_ROW6]};
    bs->mlp = (mlp_grads){.dhg = slot[SLOT_WIDE0], .dh = slot[SLOT_WIDE1], .dln = slot[SLOT_ROW0]};
}

/* Bytes one thread of the backward kernels uses: the widest RMSNorm's
 * partial sums or the largest attention's block of score gradients (decoder
 * self-attention (T, T); encoder self-attention (R, R); CCA (m, K*R); the
 * encoder's cross-attention (R, m)). */
static size_t kern_slice_bytes(const rtr_model_config *c) {
    size_t s = rtr_rmsnorm_backward_scratch(c->C), a = rtr_attention_backward_scratch(c->T, c->T);
    if (a > s) s = a;
    if (c->n_cca) {
        size_t more[] = {rtr_rmsnorm_backward_scratch(c->EC), rtr_attention_backward_scratch(c->R, c->R),
                         rtr_attention_backward_scratch(c->m, c->K * c->R), rtr_attention_backward_scratch(c->R, c->m)};
        for (size_t i = 0; i < sizeof more / sizeof *more; i++)
            if (more[i] > s) s = more[i];
    }
    return s;
}

/* The kernels' per-thread scratch for OpenMP's present thread count
 * (allocated again, larger, when it has risen). */
static int kern_scratch_ensure(rtr_model *m) {
    bwd_scratch *bs = &m->bs;
    int nt = omp_get_max_threads();
    if (bs->kern && nt <= bs->kern_threads) return RTR_OK;
    size_t slice = kern_slice_bytes(&m->cfg);
    void *p = rtr_calloc((size_t)nt, slice);
    if (!p) return rtr_seterr(RTR_E_NOMEM, "model: out of memory for the backward scratch of %d threads", nt);
    rtr_free(bs->kern);
    bs->kern = p;
    bs->kern_slice = slice;
    bs->kern_bytes = (size_t)nt * slice;
    bs->kern_threads = nt;
    return RTR_OK;
}

int rtr_model_new(const rtr_model_config *cfg, int max_B, rtr_model **out) {
    *out = NULL;
    if (max_B < 1 || max_B > 4096) return rtr_seterr(RTR_E_INVALID, "model: batch size %d out of range 1..4096", max_B);
    rtr_model *m = rtr_calloc(1, sizeof *m);
    if (!m) return rtr_seterr(RTR_E_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->max_B = max_B;
    m->first_cca = cfg->n_cca ? cfg->cca[0] - 1 : -1;
    for (int i = 0; i < cfg->n_cca; i++) m->is_cca[cfg->cca[i] - 1] = 1;
    if (cfg->n_cca) {
        m->enc = rtr_calloc((size_t)cfg->EL, sizeof *m->enc);
        m->el = rtr_calloc((size_t)cfg->EL, sizeof *m->el);
        if (!m->enc || !m->el) goto nomem;
    }
    build_table(m);   /* counts */
    m->tab = rtr_calloc((size_t)m->ntab, sizeof *m->tab);
    m->nparams = 0;
    if (!m->tab) goto nomem;
    build_table(m);
    m->params = rtr_calloc(m->nparams, sizeof(float));
    if (!m->params) goto nomem;
    bump b = {NULL, 0};
    layout_acts(m, &b);
    m->act_bytes = b.off;
    m->act_mem = rtr_calloc(1, b.off + 64);
    if (!m->act_mem) goto nomem;
    b.base = (char *)(((uintptr_t)m->act_mem + 63) & ~(uintptr_t)63);
    b.off = 0;
    layout_acts(m, &b);
    m->rope_dec = rtr_rope_table_fill(m->rope_dec_cs, cfg->C / cfg->NH, 0, rope_dec_positions(cfg));
    if (cfg->n_cca) m->rope_enc = rtr_rope_table_fill(m->rope_enc_cs, cfg->EC / cfg->ENH, 0, cfg->R);
    *out = m;
    return RTR_OK;
nomem:
    rtr_model_free(m);
    return rtr_seterr(RTR_E_NOMEM, "model: out of memory for %d layers of width %d", cfg->L, cfg->C);
}

int rtr_model_config_nparams(const rtr_model_config *cfg, size_t *nparams) {
    *nparams = 0;
    rtr_model *m = rtr_calloc(1, sizeof *m);
    if (!m) return RTR_E_NOMEM;
    m->cfg = *cfg;
    for (int i = 0; i < cfg->n_cca; i++) m->is_cca[cfg->cca[i] - 1] = 1;
    int rc = RTR_OK;
    if (cfg->n_cca && !(m->enc = rtr_calloc((size_t)cfg->EL, sizeof *m->enc))) rc = RTR_E_NOMEM;
    if (!rc) {
        build_table(m);   /* the counting pass: nothing is allocated from the sizes */
        *nparams = m->nparams;
    }
    rtr_free(m->enc);
    rtr_free(m);
    return rc;
}

void rtr_model_free(rtr_model *m) {
    if (!m) return;
    rtr_free(m->tab);
    rtr_free(m->params);
    rtr_free(m->grads);
    rtr_free(m->am);
    rtr_free(m->av);
    rtr_free(m->act_mem);
    rtr_free(m->scr_mem);
    rtr_free(m->bs.kern);
    rtr_free(m->enc);
    rtr_free(m->el);
    rtr_free(m);
}

size_t rtr_model_scratch_bytes(const rtr_model *m) {
    size_t sz[N_SLOTS], total = 0;
    scratch_sizes(m, sz);
    for (int i = 0; i < N_SLOTS; i++) total += sz[i];
    int nt = omp_get_max_threads();
    if (m->bs.kern_threads > nt) nt = m->bs.kern_threads;
    return total * sizeof(float) + (size_t)nt * kern_slice_bytes(&m->cfg);
}

int rtr_model_alloc_train(rtr_model *m) {
    if (!m->grads) m->grads = rtr_calloc(m->nparams, sizeof(float));
    if (!m->am) m->am = rtr_calloc(m->nparams, sizeof(float));
    if (!m->av) m->av = rtr_calloc(m->nparams, sizeof(float));
    if (!m->scr_mem) {
        size_t sz[N_SLOTS], total = 0;
        scratch_sizes(m, sz);
        for (int i = 0; i < N_SLOTS; i++) total += sz[i];
        m->scr_mem = rtr_calloc(total, sizeof(float));
        if (m->scr_mem) {
            float *slot[N_SLOTS];
            size_t off = 0;
            for (int i = 0; i < N_SLOTS; i++) {
                slot[i] = (float *)m->scr_mem + off;
                off += sz[i];
            }
            bind_scratch(&m->bs, slot);
        }
    }
    if (!m->grads || !m->am || !m->av || !m->scr_mem)
        return rtr_seterr(RTR_E_NOMEM, "model: out of memory for gradients and optimizer state");
    return kern_scratch_ensure(m);
}

/* --- initialisation --------------------------------------------------------------------- */
/* in (0, 1): never 0, so that log() is finite */
static double uniform01(uint64_t *s) { return ((rtr_splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

void rtr_model_init(rtr_model *m, uint64_t seed) {
    const rtr_model_config *c = &m->cfg;
    uint64_t s = seed;
    for (int i = 0; i < m->ntab; i++) {
        rtr_model_param *p = &m->tab[i];
        float *w = m->params + p->off;
        const char *dot = strrchr(p->name, '.');
        if (p->ndim == 1) {   /* norm gains 1; the CCA's query and key biases RTR_CCA_BIAS_INIT */
            int bias = dot && (!strcmp(dot, ".cca_qb") || !strcmp(dot, ".cca_kb"));
            for (size_t j = 0; j < p->n; j++) w[j] = bias ? RTR_CCA_BIAS_INIT : 1.0f;
            continue;
        }
        int residual = dot && (!strcmp(dot, ".attn_proj") || !strcmp(dot, ".fc_proj") || !strcmp(dot, ".cca_proj") ||
                               !strcmp(dot, ".x_proj"));
        int layers = !strncmp(p->name, "enc.", 4) ? c->EL : c->L;
        double std = residual ? 0.02 / sqrt(2.0 * layers) : 0.02;
        for (size_t j = 0; j + 1 < p->n + 1; j += 2) {   /* Box-Muller, two at a time */
            double u1 = uniform01(&s), u2 = uniform01(&s), r = sqrt(-2.0 * log(u1));
            w[j] = (float)(std * r * cos(2 * PI * u2));
            if (j + 1 < p->n) w[j + 1] = (float)(std * r * sin(2 * PI * u2));
        }
    }
}

/* --- sub-layers ------------------------------------------------------------------------- */

/* d(i): the gradient slice of tensor i, or NULL when it is frozen */
static float *gw(rtr_model *m, int i) {
    if (i < 0) return NULL;
    if (m->frozen && !m->tab[i].retrieval) return NULL;
    return m->grads + m->tab[i].off;
}

/* out (rows, OC) += inp (rows, IC) @ w^T */
static void mm_add(float *out, const float *inp, const float *w, size_t rows, int IC, int OC) {
    rtr_matmul_forward_acc(out, inp, w, (int)rows, IC, OC);
}

static void copyf(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof *dst); }
static void zerof(float *dst, size_t n) { memset(dst, 0, n * sizeof *dst); }

/* out = in + attention(rope(q), rope(k), v) Wproj^T over rmsnorm(in); Bn
 * sequences of T rows of width W; rope: the table for head size W / NH. */
static void sa_forward(rtr_model *m, sa_acts *a, float *out, const float *in, const blk_ix *ix,
                       const rtr_rope_table *rope, int Bn, int T, int W, int NH, int causal, const uint8_t *kmask) {
    size_t rows = (size_t)Bn * T;
    const float *wqkv = PW(m, ix->qkv);
    rtr_rmsnorm_forward(a->ln, a->rstd, in, PW(m, ix->ln1), (int)rows, W);
    rtr_matmul_forward(a->q, a->ln, wqkv, NULL, (int)rows, W, W);
    rtr_matmul_forward(a->k, a->ln, wqkv + (size_t)W * W, NULL, (int)rows, W, W);
    rtr_matmul_forward(a->v, a->ln, wqkv + 2 * (size_t)W * W, NULL, (int)rows, W, W);
    rtr_rope_forward(a->q, a->q, rope, Bn, T, NH, W / NH, 0);
    rtr_rope_forward(a->k, a->k, rope, Bn, T, NH, W / NH, 0);
    rtr_attention_forward(a->y, a->att, a->q, a->k, a->v, kmask, Bn, T, T, NH, W / NH, causal);
    copyf(out, in, rows * W);
    mm_add(out, a->y, PW(m, ix->proj), rows, W, W);
}

/* dres (rows, W): in, the gradient of the sub-layer's output; out, plus the
 * gradient of its input. */
static void sa_backward(rtr_model *m, sa_acts *a, float *dres, const float *in, const blk_ix *ix,
                        const rtr_rope_table *rope, int Bn, int T, int W, int NH) {
    size_t rows = (size_t)Bn * T, n = rows * W;
    const sa_grads *d = &m->bs.sa;
    const float *wqkv = PW(m, ix->qkv);
    float *gqkv = gw(m, ix->qkv);
    zerof(d->dy, n);
    rtr_matmul_backward(d->dy, gw(m, ix->proj), NULL, dres, a->y, PW(m, ix->proj), (int)rows, W, W);
    zerof(d->dq, n);
    zerof(d->dk, n);
    zerof(d->dv, n);
    rtr_attention_backward(d->dq, d->dk, d->dv, m->bs.kern, m->bs.kern_bytes, d->dy, a->att, a->q, a->k, a->v, Bn, T,
                           T, NH, W / NH);
    zerof(d->dq0, n);
    zerof(d->dk0, n);
    rtr_rope_backward(d->dq0, d->dq, rope, Bn, T, NH, W / NH, 0);
    rtr_rope_backward(d->dk0, d->dk, rope, Bn, T, NH, W / NH, 0);
    zerof(d->dln, n);
    size_t WW = (size_t)W * W;
    rtr_matmul_backward(d->dln, gqkv, NULL, d->dq0, a->ln, wqkv, (int)rows, W, W);
    rtr_matmul_backward(d->dln, gqkv ? gqkv + WW : NULL, NULL, d->dk0, a->ln, wqkv + WW, (int)rows, W, W);
    rtr_matmul_backward(d->dln, gqkv ? gqkv + 2 * WW : NULL, NULL, d->dv, a->ln, wqkv + 2 * WW, (int)rows, W, W);
    rtr_rmsnorm_backward(dres, gw(m, ix->ln1), m->bs.kern, m->bs.kern_bytes, d->dln, in, PW(m, ix->ln1), a->rstd,
                         (int)rows, W);
}

/* out = in + gelu(rmsnorm(in) Wfc^T) Wproj^T */
static void mlp_forward(rtr_model *m, mlp_acts *a, float *out, const float *in, const blk_ix *ix, size_t rows, int W,
                        int FW) {
    rtr_rmsnorm_forward(a->ln, a->rstd, in, PW(m, ix->ln2), (int)rows, W);
    rtr_matmul_forward(a->h, a->ln, PW(m, ix->fc), NULL, (int)rows, W, FW);
    rtr_gelu_forward(a->hg, a->h, (int)(rows * FW));
    copyf(out, in, rows * W);
    mm_add(out, a->hg, PW(m, ix->fcp), rows, FW, W);
}

static void mlp_backward(rtr_model *m, mlp_acts *a, float *dres, const float *in, const blk_ix *ix, size_t rows, int W,
                         int FW) {
    const mlp_grads *d = &m->bs.mlp;
    zerof(d->dhg, rows * FW);
    rtr_matmul_backward(d->dhg, gw(m, ix->fcp), NULL, dres, a->hg, PW(m, ix->fcp), (int)rows, FW, W);
    zerof(d->dh, rows * FW);
    rtr_gelu_backward(d->dh, a->h, d->dhg, (int)(rows * FW));
    zerof(d->dln, rows * W);
    rtr_matmul_backward(d->dln, gw(m, ix->fc), NULL, d->dh, a->ln, PW(m, ix->fc), (int)rows, W, FW);
    rtr_rmsnorm_backward(dres, gw(m, ix->ln2), m->bs.kern, m->bs.kern_bytes, d->dln, in, PW(m, ix->ln2), a->rstd,
                         (int)rows, W);
}

/* Cross-attention: a->o (Bn*Tq, W) = attention(qin Wq^T, kvin Wk^T, kvin Wv^T) Wproj^T.
 * qin (Bn*Tq, W); kvin (NKV, KW) with NKV = Bn/rep * Tk: query sequence b
 * reads key sequence b / rep. */
typedef struct xa_shape {
    int Bn, Tq, Tk, W, KW, NH, rep;
    const uint8_t *kmask; /* (Bn, Tk) or NULL */
    int qpos0;            /* rotary positions: query i at qpos0 + i, key j at j mod kseq; -1: none */
    int kseq;
    const rtr_rope_table *rope; /* for head size W / NH, when qpos0 >= 0 */
} xa_shape;

static void xa_forward(rtr_model *m, xa_acts *a, const float *qin, const float *kvin, const blk_ix *ix,
                       const xa_shape *s) {
    size_t nq = (size_t)s->Bn * s->Tq, nkv = (size_t)(s->Bn / s->rep) * s->Tk, seq = (size_t)s->Tk * s->W;
    const float *wkv = PW(m, ix->xkv);
    const float *bq = ix->xqb >= 0 ? PW(m, ix->xqb) : NULL, *bk = ix->xkb >= 0 ? PW(m, ix->xkb) : NULL;
    rtr_matmul_forward(a->q, qin, PW(m, ix->xq), bq, (int)nq, s->W, s->W);
    rtr_matmul_forward(a->kx, kvin, wkv, bk, (int)nkv, s->KW, s->W);
    rtr_matmul_forward(a->vx, kvin, wkv + (size_t)s->W * s->KW, NULL, (int)nkv, s->KW, s->W);
    if (s->qpos0 >= 0) {
        int hs = s->W / s->NH;
        rtr_rope_forward(a->q, a->q, s->rope, s->Bn, s->Tq, s->NH, hs, s->qpos0);
        rtr_rope_forward(a->kx, a->kx, s->rope, (int)(nkv / s->kseq), s->kseq, s->NH, hs, 0);
    }
    if (s->rep > 1)
        for (int b = 0; b < s->Bn; b++) {
            copyf(a->k + b * seq, a->kx + (size_t)(b / s->rep) * seq, seq);
            copyf(a->v + b * seq, a->vx + (size_t)(b / s->rep) * seq, seq);
        }
    rtr_attention_forward(a->y, a->att, a->q, a->k, a->v, s->kmask, s->Bn, s->Tq, s->Tk, s->NH, s->W / s->NH, 0);
    rtr_matmul_forward(a->o, a->y, PW(m, ix->xproj), NULL, (int)nq, s->W, s->W);
}

/* do_ (Bn*Tq, W): the gradient of a->o. dqin (Bn*Tq, W) is WRITTEN; dkvin
 * (NKV, KW), if not NULL, is ACCUMULATED. */
static void xa_backward(rtr_model *m, xa_acts *a, const float *do_, float *dqin, float *dkvin, const float *qin,
                        const float *kvin, const blk_ix *ix, const xa_shape *s) {
    size_t nq = (size_t)s->Bn * s->Tq, nk = (size_t)s->Bn * s->Tk, nkv = (size_t)(s->Bn / s->rep) * s->Tk;
    size_t seq = (size_t)s->Tk * s->W;
    const xa_grads *d = &m->bs.xa;
    float *dy = d->dy, *dq = d->dq, *dk = d->dk, *dv = d->dv, *dkx = d->dkx, *dvx = d->dvx;
    const float *wkv = PW(m, ix->xkv);
    float *gkv = gw(m, ix->xkv);
    zerof(dy, nq * s->W);
    rtr_matmul_backward(dy, gw(m, ix->xproj), NULL, do_, a->y, PW(m, ix->xproj), (int)nq, s->W, s->W);
    zerof(dq, nq * s->W);
    zerof(dk, nk * s->W);
    zerof(dv, nk * s->W);
    rtr_attention_backward(dq, dk, dv, m->bs.kern, m->bs.kern_bytes, dy, a->att, a->q, a->k, a->v, s->Bn, s->Tq, s->Tk,
                           s->NH, s->W / s->NH);
    if (s->qpos0 >= 0) {   /* back through the rotations (rep is 1 here: dy and dkx are free) */
        RTR_ASSERT(s->rep == 1);
        int hs = s->W / s->NH;
        zerof(dy, nq * s->W);
        zerof(dkx, nk * s->W);
        rtr_rope_backward(dy, dq, s->rope, s->Bn, s->Tq, s->NH, hs, s->qpos0);
        rtr_rope_backward(dkx, dk, s->rope, (int)(nk / s->kseq), s->kseq, s->NH, hs, 0);
        float *t = dq;
        dq = dy;
        dy = t;
        t = dk;
        dk = dkx;
        dkx = t;
    }
    if (s->rep > 1) {   /* sum the replicas' gradients */
        zerof(dkx, nkv * s->W);
        zerof(dvx, nkv * s->W);
        for (int b = 0; b < s->Bn; b++) {
            float *gk = dkx + (size_t)(b / s->rep) * seq, *gv = dvx + (size_t)(b / s->rep) * seq;
            const float *sk = dk + b * seq, *sv = dv + b * seq;
            for (size_t i = 0; i < seq; i++) {
                gk[i] += sk[i];
                gv[i] += sv[i];
            }
        }
    } else {
        dkx = dk;
        dvx = dv;
    }
    zerof(dqin, nq * s->W);
    rtr_matmul_backward(dqin, gw(m, ix->xq), gw(m, ix->xqb), dq, qin, PW(m, ix->xq), (int)nq, s->W, s->W);
    size_t WK = (size_t)s->W * s->KW;
    rtr_matmul_backward(dkvin, gkv, gw(m, ix->xkb), dkx, kvin, wkv, (int)nkv, s->KW, s->W);
    rtr_matmul_backward(dkvin, gkv ? gkv + WK : NULL, NULL, dvx, kvin, wkv + WK, (int)nkv, s->KW, s->W);
}

/* --- encoder ---------------------------------------------------------------------------- */
static xa_shape enc_xa_shape(const rtr_model *m, int B) {
    const rtr_model_config *c = &m->cfg;
    int Lc = m->T / c->m;
    xa_shape s = {B * Lc * c->K, c->R, c->m, c->EC, c->C, c->ENH, c->K, NULL, -1, 0, NULL};
    return s;
}

static xa_shape cca_shape(const rtr_model *m, int B) {
    const rtr_model_config *c = &m->cfg;
    xa_shape s = {B * (m->T / c->m), c->m, c->K * c->R, c->C, c->EC, c->NH, 1, m->nmask, c->m, c->R, &m->rope_dec};
    return s;
}

/* E (NE, EC) from the neighbour tokens and ctx (N, C), the first CCA layer's
 * normalised decoder rows. */
static void encoder_forward(rtr_model *m, const float *ctx) {
    const rtr_model_config *c = &m->cfg;
    int B = m->B, Bn = B * (m->T / c->m) * c->K;
    size_t NE = (size_t)Bn * c->R;
    const float *wte = PW(m, m->wte);
#pragma omp parallel for if (NE * c->C > 65536)
    for (size_t r = 0; r < NE; r++) {
        int32_t t = m->nbr[r];
        if (t >= 0) copyf(m->emb + r * c->C, wte + (size_t)t * c->C, c->C);
        else zerof(m->emb + r * c->C, c->C);
    }
    rtr_matmul_forward(m->el[0].res, m->emb, PW(m, m->ein), NULL, (int)NE, c->C, c->EC);
    xa_shape xs = enc_xa_shape(m, B);
    for (int j = 0; j < c->EL; j++) {
        blk_acts *a = &m->el[j];
        float *out = j + 1 < c->EL ? m->el[j + 1].res : m->eresL;
        sa_forward(m, &a->sa, a->res1, a->res, &m->enc[j], &m->rope_enc, Bn, c->R, c->EC, c->ENH, 0, m->nmask);
        const float *mid = a->res1;
        if (j == 0) {
            rtr_rmsnorm_forward(a->xln, a->xrstd, a->res1, PW(m, m->enc[0].xln), (int)NE, c->EC);
            xa_forward(m, &a->xa, a->xln, ctx, &m->enc[0], &xs);
            for (size_t i = 0; i < NE * c->EC; i++) a->res2[i] = a->res1[i] + a->xa.o[i];
            mid = a->res2;
        }
        mlp_forward(m, &a->mlp, out, mid, &m->enc[j], NE, c->EC, c->EF);
    }
    rtr_rmsnorm_forward(m->E, m->E_rstd, m->eresL, PW(m, m->elnf), (int)NE, c->EC);
}

/* dE (NE, EC): the gradient of E (overwritten as scratch). dctx (N, C) gets
 * the gradient of the decoder rows ACCUMULATED (when not NULL). */
static void encoder_backward(rtr_model *m, float *dE, float *dctx, const float *ctx) {
    const rtr_model_config *c = &m->cfg;
    int B = m->B, Bn = B * (m->T / c->m) * c->K;
    size_t NE = (size_t)Bn * c->R;
    float *dh = m->bs.enc_dres;
    zerof(dh, NE * c->EC);
    rtr_rmsnorm_backward(dh, gw(m, m->elnf), m->bs.kern, m->bs.kern_bytes, dE, m->eresL, PW(m, m->elnf), m->E_rstd,
                         (int)NE, c->EC);
    xa_shape xs = enc_xa_shape(m, B);
    for (int j = c->EL - 1; j >= 0; j--) {
        blk_acts *a = &m->el[j];
        mlp_backward(m, &a->mlp, dh, j == 0 ? a->res2 : a->res1, &m->enc[j], NE, c->EC, c->EF);
        if (j == 0) {
            float *dxln = dE;   /* E's gradient is no longer needed */
            xa_backward(m, &a->xa, dh, dxln, dctx, a->xln, ctx, &m->enc[0], &xs);
            rtr_rmsnorm_backward(dh, gw(m, m->enc[0].xln), m->bs.kern, m->bs.kern_bytes, dxln, a->res1,
                                 PW(m, m->enc[0].xln), a->xrstd, (int)NE, c->EC);
        }
        sa_backward(m, &a->sa, dh, a->res, &m->enc[j], &m->rope_enc, Bn, c->R, c->EC, c->ENH);
    }
    /* enc.in, and the shared token embedding unless frozen */
    float *gwte = gw(m, m->wte), *demb = gwte ? m->bs.demb : NULL;
    if (demb) zerof(demb, NE * c->C);
    rtr_matmul_backward(demb, gw(m, m->ein), NULL, dh, m->emb, PW(m, m->ein), (int)NE, c->C, c->EC);
    if (gwte)
        for (size_t r = 0; r < NE; r++) {
            int32_t t = m->nbr[r];
            if (t < 0) continue;
            float *g = gwte + (size_t)t * c->C;
            const float *d = demb + r * c->C;
            for (int i = 0; i < c->C; i++) g[i] += d[i];
        }
}

/* Neighbour tokens into the model, with the mask of present ones (-1: missing). */
/* nbr (n tokens) into the model's neighbour rows from row at. */
static void put_neighbours(rtr_model *m, size_t at, const int32_t *nbr, size_t n) {
    for (size_t i = 0; i < n; i++) {
        m->nbr[at + i] = nbr[i];
        m->nmask[at + i] = nbr[i] >= 0;
    }
}

int rtr_model_encode_chunks(rtr_model *m, int n, const int32_t *const *nbr, const float *const *ctx,
                            float *const *E) {
    const rtr_model_config *c = &m->cfg;
    size_t kr = (size_t)c->K * c->R, rows = (size_t)c->m * c->C;
    RTR_ASSERT(n >= 1 && n <= m->max_B);
    float *gathered = NULL;
    if (n > 1 && !(gathered = rtr_malloc((size_t)n * rows * sizeof *gathered)))
        return rtr_seterr(RTR_E_NOMEM, "model: out of memory encoding %d chunks", n);
    m->B = n;
    m->T = c->m;
    m->retrieval = 1;
    m->has_targets = 0;   /* the activations no longer hold a batch to backpropagate */
    for (int i = 0; i < n; i++) {
        put_neighbours(m, (size_t)i * kr, nbr[i], kr);
        if (gathered) copyf(gathered + (size_t)i * rows, ctx[i], rows);
    }
    encoder_forward(m, gathered ? gathered : ctx[0]);
    for (int i = 0; i < n; i++) copyf(E[i], m->E + (size_t)i * kr * c->EC, kr * c->EC);
    rtr_free(gathered);
    return RTR_OK;
}

/* --- the whole model -------------------------------------------------------------------- */
int rtr_model_forward(rtr_model *m, const int32_t *idx, const int32_t *targets, const int32_t *nbr, int B, int T,
                      float *loss) {
    const rtr_model_config *c = &m->cfg;
    if (B < 1 || B > m->max_B || T < c->m || T > c->T || T % c->m)
        return rtr_seterr(RTR_E_INVALID, "model: batch %d x %d tokens does not fit (at most %d x %d, multiple of %d)",
                          B, T, m->max_B, c->T, c->m);
    size_t N = (size_t)B * T;
    for (size_t i = 0; i < N; i++) {
        if (idx[i] < 0 || idx[i] >= c->V)
            return rtr_seterr(RTR_E_INVALID, "model: token %d at position %zu outside the vocabulary of %d", idx[i],
                              i, c->V);
        if (targets && targets[i] >= c->V)
            return rtr_seterr(RTR_E_INVALID, "model: target %d outside the vocabulary of %d", targets[i], c->V);
    }
    m->B = B;
    m->T = T;
    m->retrieval = nbr && c->n_cca > 0;
    m->has_targets = targets != NULL;
    memcpy(m->idx, idx, N * sizeof *idx);
    if (targets) memcpy(m->targets, targets, N * sizeof *targets);
    if (m->retrieval) {
        size_t NE = (size_t)B * (T / c->m) * c->K * c->R;
        for (size_t i = 0; i < NE; i++)
            if (nbr[i] < -1 || nbr[i] >= c->V)
                return rtr_seterr(RTR_E_INVALID, "model: neighbour token %d outside the vocabulary of %d", nbr[i],
                                  c->V);
        put_neighbours(m, 0, nbr, NE);
    }
    const float *wte = PW(m, m->wte);
    float *x = m->dl[0].res;
#pragma omp parallel for if (N * c->C > 65536)
    for (size_t i = 0; i < N; i++) copyf(x + i * c->C, wte + (size_t)idx[i] * c->C, c->C);
    xa_shape cs = cca_shape(m, B);
    for (int l = 0; l < c->L; l++) {
        blk_acts *a = &m->dl[l];
        float *out = l + 1 < c->L ? m->dl[l + 1].res : m->resL;
        sa_forward(m, &a->sa, a->res1, a->res, &m->dec[l], &m->rope_dec, B, T, c->C, c->NH, 1, NULL);
        const float *mid = a->res1;
        if (m->is_cca[l] && m->retrieval) {
            rtr_rmsnorm_forward(a->xln, a->xrstd, a->res1, PW(m, m->dec[l].xln), (int)N, c->C);
            if (l == m->first_cca) encoder_forward(m, a->xln);
            rtr_cca_gather(a->g, NULL, a->xln, B, T, c->C, c->m);
            xa_forward(m, &a->xa, a->g, m->E, &m->dec[l], &cs);
            copyf(a->res2, a->res1, N * c->C);
            rtr_cca_scatter(a->res2, a->xa.o, B, T, c->C, c->m);
            mid = a->res2;
        }
        mlp_forward(m, &a->mlp, out, mid, &m->dec[l], N, c->C, c->F);
    }
    rtr_rmsnorm_forward(m->lnf_out, m->lnf_rstd, m->resL, PW(m, m->lnf), (int)N, c->C);
    rtr_matmul_forward(m->logits, m->lnf_out, wte, NULL, (int)N, c->C, c->V);
    if (targets) {
        float l = rtr_crossentropy(m->dlogits, m->logits, targets, (int)N, c->V);
        if (loss) *loss = l;
    }
    return RTR_OK;
}

int rtr_model_zero_grad(rtr_model *m) {
    int rc = rtr_model_alloc_train(m);
    if (rc < 0) return rc;
    zerof(m->grads, m->nparams);
    return RTR_OK;
}

int rtr_model_backward(rtr_model *m) {
    const rtr_model_config *c = &m->cfg;
    if (!m->has_targets) return rtr_seterr(RTR_E_INVALID, "model: backward needs a forward pass with targets");
    if (!m->grads || !m->scr_mem) return rtr_seterr(RTR_E_INVALID, "model: backward before rtr_model_zero_grad");
    int rc = kern_scratch_ensure(m);   /* OpenMP may have more threads than at rtr_model_zero_grad */
    if (rc < 0) return rc;
    int B = m->B, T = m->T;
    size_t N = (size_t)B * T;
    float *dres = m->bs.dres, *dx = m->bs.dx, *dE = m->bs.dE;
    zerof(dres, N * c->C);
    if (m->retrieval) zerof(dE, (size_t)B * (T / c->m) * c->K * c->R * c->EC);
    const float *wte = PW(m, m->wte);
    float *gwte = gw(m, m->wte);
    /* head (tied to the embedding) and the final norm */
    float *dlnf = m->bs.dlnf;
    zerof(dlnf, N * c->C);
    rtr_matmul_backward(dlnf, gwte, NULL, m->dlogits, m->lnf_out, wte, (int)N, c->C, c->V);
    rtr_rmsnorm_backward(dres, gw(m, m->lnf), m->bs.kern, m->bs.kern_bytes, dlnf, m->resL, PW(m, m->lnf),
                         m->lnf_rstd, (int)N, c->C);
    xa_shape cs = cca_shape(m, B);
    for (int l = c->L - 1; l >= 0; l--) {
        blk_acts *a = &m->dl[l];
        int cca = m->is_cca[l] && m->retrieval;
        mlp_backward(m, &a->mlp, dres, cca ? a->res2 : a->res1, &m->dec[l], N, c->C, c->F);
        if (cca) {
            /* the CCA output's gradient, gathered with the shift */
            float *dout = m->bs.cca_dout, *dg = m->bs.cca_dq;
            rtr_cca_gather(dout, NULL, dres, B, T, c->C, c->m);
            xa_backward(m, &a->xa, dout, dg, dE, a->g, m->E, &m->dec[l], &cs);
            zerof(dx, N * c->C);
            rtr_cca_scatter(dx, dg, B, T, c->C, c->m);   /* d(normalised rows) */
            if (l == m->first_cca) encoder_backward(m, dE, dx, a->xln);
            rtr_rmsnorm_backward(dres, gw(m, m->dec[l].xln), m->bs.kern, m->bs.kern_bytes, dx, a->res1,
                                 PW(m, m->dec[l].xln), a->xrstd, (int)N, c->C);
        }
        if (m->frozen && l <= m->first_cca) break;   /* nothing below is trained */
        sa_backward(m, &a->sa, dres, a->res, &m->dec[l], &m->rope_dec, B, T, c->C, c->NH);
    }
    if (gwte) {
        const float *d = dres;
        for (size_t i = 0; i < N; i++) {
            float *g = gwte + (size_t)m->idx[i] * c->C;
            for (int j = 0; j < c->C; j++) g[j] += d[i * c->C + j];
        }
    }
    return RTR_OK;
}

/* --- AdamW ------------------------------------------------------------------------------ */
void rtr_adamw_default(rtr_adamw *hp) {
    hp->beta1 = 0.9f;
    hp->beta2 = 0.95f;
    hp->eps = 1e-8f;
    hp->weight_decay = 0.1f;
    hp->clip = 1.0f;
}

float rtr_model_adamw(rtr_model *m, const rtr_adamw *hp, float lr) {
    int rc = rtr_model_alloc_train(m);
    if (rc < 0) return (float)rc;
    double ss = 0;
    for (int i = 0; i < m->ntab; i++) {
        const rtr_model_param *p = &m->tab[i];
        if (m->frozen && !p->retrieval) continue;
        const float *g = m->grads + p->off;
        for (size_t j = 0; j < p->n; j++) ss += (double)g[j] * g[j];
    }
    float norm = (float)sqrt(ss);
    float scale = hp->clip > 0 && norm > hp->clip ? hp->clip / (norm + 1e-6f) : 1.0f;
    m->adam_t++;
    double bc1 = 1.0 - pow(hp->beta1, (double)m->adam_t), bc2 = 1.0 - pow(hp->beta2, (double)m->adam_t);
    float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
    for (int i = 0; i < m->ntab; i++) {
        const rtr_model_param *p = &m->tab[i];
        if (m->frozen && !p->retrieval) continue;
        float *w = m->params + p->off, *g = m->grads + p->off, *mm = m->am + p->off, *vv = m->av + p->off;
        float decay = p->decay ? 1.0f - lr * hp->weight_decay : 1.0f;
#pragma omp parallel for if (p->n > 65536)
        for (size_t j = 0; j < p->n; j++) {
            float gj = g[j] * scale;
            mm[j] = hp->beta1 * mm[j] + (1.0f - hp->beta1) * gj;
            vv[j] = hp->beta2 * vv[j] + (1.0f - hp->beta2) * gj * gj;
            w[j] = w[j] * decay - step * mm[j] / (sqrtf(vv[j]) * rbc2 + hp->eps);
        }
    }
    return norm;
}

float rtr_lr_schedule(float lr, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (total <= warmup) return lr;
    double t = (double)(step - warmup) / (double)(total - warmup);
    if (t > 1) t = 1;
    double min_lr = lr * 0.1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1 + cos(PI * t)));
}

double rtr_model_train_flops(const rtr_model_config *c, int B, int T, int retrieval) {
    double N = (double)B * T, C = c->C, F = c->F;
    /* per decoder token and layer: qkv, proj, MLP; causal attention sees T/2 keys on average */
    double fwd = N * c->L * (2 * (3 * C * C + C * C + 2 * C * F) + 2 * 2 * (T / 2.0) * C);
    fwd += N * 2 * C * c->V;   /* head */
    if (retrieval && c->n_cca) {
        double Lc = T / (double)c->m, NE = B * Lc * c->K * c->R, EC = c->EC, EF = c->EF, KR = c->K * c->R;
        /* CCA: queries and output (N rows), keys and values (NE rows), attention */
        fwd += c->n_cca * (N * 2 * 2 * C * C + NE * 2 * 2 * EC * C + N * 2 * 2 * KR * C);
        /* encoder: input projection, layers, first layer's cross-attention */
        fwd += NE * 2 * C * EC;
        fwd += NE * c->EL * (2 * (4 * EC * EC + 2 * EC * EF) + 2 * 2 * c->R * EC);
        fwd += NE * (2 * 2 * EC * EC + 2 * 2 * c->m * EC) + N * 2 * 2 * C * EC;
    }
    return 3 * fwd;
}
