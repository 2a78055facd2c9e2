/*
 * retro_int.h - the model's internals, shared by retro.c (training passes)
 * and infer.c (incremental decoding). Not a public interface.
 */
#ifndef RTR_RETRO_INT_H
#define RTR_RETRO_INT_H

#include <stddef.h>
#include <stdint.h>

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
    blk_acts dl[RTR_MODEL_MAX_LAYERS];
    float *resL, *lnf_out, *lnf_rstd, *logits, *dlogits; /* (N,C) (N,C) (N) (N,V) (N,V) */
    blk_acts *el;
    float *emb;                      /* (NE, C) neighbour token embeddings */
    float *eresL, *E, *E_rstd;       /* (NE, EC) (NE, EC) (NE) */
    uint8_t *nmask;                  /* (NE) neighbour token exists */
    int32_t *idx, *targets, *nbr;    /* copies of the last inputs */
    /* backward scratch: one allocation */
    void *scr_mem;
    float *s[13];                    /* s[0..7]: (rows, W) sized; s[8], s[9]: MLP-wide;
                                      * s[10] dres, s[11] dx (N, C); s[12] dE (NE, EC) */
    /* the last forward pass */
    int B, T, has_targets, retrieval;
};


#define PW(m, i) ((m)->params + (m)->tab[i].off)

/* E (K*R, EC) for ONE chunk: the encoder over its K neighbours nbr (K, R)
 * (-1 = missing), cross-attending to ctx (m, C), the first CCA layer's
 * normalised decoder rows of that chunk. Uses the model's activation
 * buffers as scratch (any earlier forward pass is lost). */
void rtr_model_encode_chunk(rtr_model *m, const int32_t *nbr, const float *ctx, float *E);

#endif
