/*
 * retro_int.h - the model's internals, shared by retro.c (training passes)
 * and infer.c (incremental decoding). Not a public interface.
 */
#ifndef RTR_RETRO_INT_H
#define RTR_RETRO_INT_H

#include <stddef.h>
#include <stdint.h>

#include "model/ops.h"
#include "model/retro.h"

/* --- the model object ------------------------------------------------------------------- */
/* Indexes into the parameter table of one block's tensors (-1: absent). The
 * decoder's CCA tensors and the encoder's cross-attention tensors share the
 * x* slots; only the CCA has the query and key biases xqb, xkb. */
typedef struct blk_ix {
    int ln1, qkv, proj, xln, xq, xkv, xqb, xkb, xproj, ln2, fc, fcp;
} blk_ix;

typedef struct sa_acts {
    float *ln, *rstd; /* (rows, W), (rows) */
    float *q, *k, *v; /* (rows, W), q and k rotated */
    float *att;       /* (Bn, NH, T, T) */
    float *y;         /* (rows, W) attention output */
} sa_acts;

typedef struct xa_acts {
    float *q;         /* (NQ, W) */
    float *kx, *vx;   /* (NKV, W) keys and values */
    float *k, *v;     /* (Bn*Tk, W): kx, vx replicated rep times (== kx, vx when rep is 1) */
    float *att;       /* (Bn, NH, Tq, Tk) */
    float *y;         /* (NQ, W) attention output */
    float *o;         /* (NQ, W) after the output projection */
} xa_acts;

typedef struct mlp_acts {
    float *ln, *rstd; /* (rows, W), (rows) */
    float *h, *hg;    /* (rows, FW) before and after GELU */
} mlp_acts;

typedef struct blk_acts {
    float *res;       /* (rows, W) the block's input */
    sa_acts sa;
    float *res1;      /* after self-attention */
    float *xln, *xrstd; /* the cross-attention's normalised input (decoder: the CCA's c) */
    float *g;         /* decoder CCA only: (B, Lc, m, C) gathered queries */
    xa_acts xa;
    float *res2;      /* after cross-attention (== res1 when it is skipped) */
    mlp_acts mlp;
} blk_acts;

/* --- the backward pass's scratch -------------------------------------------------------
 * One allocation (rtr_model_alloc_train) cut into slots that every layer
 * reuses; the names below say what a slot holds where it is used (each the
 * gradient of what its comment names), and names that share a slot are never
 * live at once (retro.c, bind_scratch, lists the sharing). A sub-layer has `rows` rows of width W: N = B*T rows of width C
 * in the decoder (the CCA's gathered queries, B*Lc*m, are N rows too), NE
 * rows of width EC in the encoder (NE rows of width C for the embedding). So
 * a (rows, W) slot holds max(N*C, NE*max(C, EC)) floats, an MLP-wide one
 * (rows, FW) max(N*F, NE*EF). */
typedef struct sa_grads {      /* sa_backward */
    float *dy;                 /* (rows, W) the attention output's gradient */
    float *dq, *dk, *dv;       /* (rows, W) of the rotated q and k, and of v */
    float *dq0, *dk0;          /* (rows, W) of q and k before the rotation */
    float *dln;                /* (rows, W) of the normalised input */
} sa_grads;

typedef struct xa_grads {      /* xa_backward */
    float *dy;                 /* (NQ, W) the attention output's gradient; then q's before the rotation */
    float *dq;                 /* (NQ, W) of the (rotated) queries */
    float *dk, *dv;            /* (Bn*Tk, W) of the keys and values the attention saw */
    float *dkx, *dvx;          /* (NKV, W) of kx, vx (replicas summed); dkx first holds k's before rotation */
} xa_grads;

typedef struct mlp_grads {     /* mlp_backward */
    float *dhg, *dh;           /* (rows, FW) after and before GELU */
    float *dln;                /* (rows, W) of the normalised input */
} mlp_grads;

typedef struct bwd_scratch {
    /* live through the whole pass: their own slots */
    float *dres;               /* (N, C) the decoder's residual stream */
    float *dx;                 /* (N, C) a CCA layer's normalised rows (the encoder's dctx) */
    float *dE;                 /* (NE, EC) the encoder output, summed over the CCA layers */
    /* live within one layer (shared slots) */
    float *dlnf;               /* (N, C) the final norm's output */
    float *cca_dout;           /* (B, Lc, m, C) the CCA output, gathered with the causal shift */
    float *cca_dq;             /* (B, Lc, m, C) the CCA's gathered queries */
    float *enc_dres;           /* (NE, EC) the encoder's residual stream */
    float *demb;               /* (NE, C) the neighbour token embeddings */
    sa_grads sa;
    xa_grads xa;
    mlp_grads mlp;
    /* per-thread scratch of rtr_rmsnorm_backward and rtr_attention_backward:
     * its own allocation, kern_threads slices of kern_slice bytes, made for
     * OpenMP's thread count when it was allocated and grown when it rises */
    void *kern;
    size_t kern_slice, kern_bytes;
    int kern_threads;
} bwd_scratch;

struct rtr_model {
    rtr_model_config cfg;
    int max_B;
    rtr_model_param *tab;
    int ntab;
    size_t nparams;
    float *params, *grads, *am, *av;
    int64_t adam_t;
    int frozen;
    int first_cca;                   /* 0-based decoder layer, -1 if none */
    uint8_t is_cca[RTR_MODEL_MAX_LAYERS];
    int wte, lnf, ein, elnf;         /* table indexes */
    blk_ix dec[RTR_MODEL_MAX_LAYERS];
    blk_ix *enc;                     /* EL entries */

    /* activations: one allocation */
    void *act_mem;
    size_t act_bytes;
    /* rotary tables (in the activation buffer; constants filled by rtr_model_new):
     * rope_dec: head size C/NH, positions 0 .. max(T, 2m, R) - 1 (T without CCA
     *           layers): the decoder's self-attention, the CCA's queries
     *           (m .. 2m - 1) and keys (0 .. R - 1), also in a session (infer.c);
     * rope_enc: head size EC/ENH, positions 0 .. R - 1 (only with CCA layers) */
    float *rope_dec_cs, *rope_enc_cs;
    rtr_rope_table rope_dec, rope_enc;
    blk_acts dl[RTR_MODEL_MAX_LAYERS];
    float *resL, *lnf_out, *lnf_rstd, *logits, *dlogits; /* (N,C) (N,C) (N) (N,V) (N,V) */
    blk_acts *el;
    float *emb;                      /* (NE, C) neighbour token embeddings */
    float *eresL, *E, *E_rstd;       /* (NE, EC) (NE, EC) (NE) */
    uint8_t *nmask;                  /* (NE) neighbour token exists */
    int32_t *idx, *targets, *nbr;    /* copies of the last inputs */
    /* backward scratch: one allocation (and the kernels' per-thread one) */
    void *scr_mem;
    bwd_scratch bs;
    /* the last forward pass */
    int B, T, has_targets, retrieval;
};


#define PW(m, i) ((m)->params + (m)->tab[i].off)

/* E[i] (K*R, EC) for n chunks (1 <= n <= the model's max_B), in one pass:
 * the encoder over chunk i's K neighbours nbr[i] (K, R) (-1 = missing),
 * cross-attending to ctx[i] (m, C), the first CCA layer's normalised decoder
 * rows of that chunk. Uses the model's activation buffers as scratch (any
 * earlier forward pass is lost). RTR_E_NOMEM (n > 1 gathers the rows). */
int rtr_model_encode_chunks(rtr_model *m, int n, const int32_t *const *nbr, const float *const *ctx, float *const *E);

#endif
