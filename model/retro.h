/*
 * retro.h - the RETRO network: a decoder with chunked cross-attention (CCA)
 * and a neighbour encoder, forward and backward, and AdamW. The exact
 * definition is docs/model.md; tests/test_model.c checks this code against
 * an independent PyTorch implementation (tests/tools/retro_ref.py).
 *
 *     rtr_model_config cfg;
 *     rtr_model_config_default(&cfg, 4096);       // vocabulary size
 *     rtr_model_config_finish(&cfg);              // derived sizes, CCA layers, checks
 *     rtr_model *m;
 *     rtr_model_new(&cfg, 4, &m);                 // room for batches of 4
 *     rtr_model_init(m, 1234);                    // random weights
 *     for (;;) {
 *         float loss;
 *         rtr_model_forward(m, idx, targets, nbr, B, cfg.T, &loss);
 *         rtr_model_zero_grad(m);
 *         rtr_model_backward(m);
 *         rtr_model_adamw(m, &hp, lr);
 *     }
 *     rtr_model_free(m);
 *
 * Memory: parameters, gradients, the two AdamW moments and the activations
 * are each ONE allocation, pointed into from the parameter table
 * (rtr_model_param) and the activation layout (which also holds the rotary
 * tables, filled at creation). Gradients, moments and the backward pass's
 * scratch are allocated on first use, so a model that only infers never pays
 * for them.
 *
 * Threads: BLAS for the matrix products, OpenMP for everything else
 * (rtr_set_threads, lib/threads.h). One model object must not be used by two
 * threads at once.
 */
#ifndef RTR_RETRO_H
#define RTR_RETRO_H

#include <stddef.h>
#include <stdint.h>

#include "lib/threads.h"   /* rtr_set_threads, for the callers that set the model's threads */

#define RTR_MODEL_MAX_LAYERS 64
/* The initial value of every element of the CCA's query and key biases:
 * through the rotary positions their product alone scores a neighbour token
 * by its relative distance to the query, highest at distance 0 (the aligned
 * continuation), about 4 nats above distance 1 at this value (docs/model.md). */
#define RTR_CCA_BIAS_INIT 4.0f

typedef struct rtr_model_config {
    int V;               /* vocabulary size */
    int C;               /* decoder width */
    int L;               /* decoder layers */
    int NH;              /* decoder heads; C / NH even */
    int F;               /* decoder MLP width */
    int T;               /* context length, a multiple of m */
    int m;               /* chunk size (64) */
    int K;               /* neighbours per chunk */
    int R;               /* neighbour length (chunk + continuation, 2m) */
    int EL;              /* encoder layers */
    int EC;              /* encoder width */
    int ENH;             /* encoder heads; EC / ENH even */
    int EF;              /* encoder MLP width */
    int n_cca;           /* number of CCA layers; 0 = the baseline */
    int cca[RTR_MODEL_MAX_LAYERS]; /* 1-based decoder layers with CCA, ascending */
} rtr_model_config;

/* Every field 0 except V and the documented defaults: C 256, L 6, NH 4,
 * T 512, m 64, K 2, EL 2; n_cca -1 means "the default pattern". */
void rtr_model_config_default(rtr_model_config *cfg, int V);
/* Fills the derived sizes that are 0 (F = 4C, R = 2m, EC = C/2,
 * ENH = max(1, NH/2), EF = 4 EC) and, when n_cca is -1, the CCA layers
 * (docs/model.md); then validates everything. RTR_E_INVALID with a detail
 * naming the field on a bad configuration. */
int rtr_model_config_finish(rtr_model_config *cfg);
/* A JSON object with every field (cca as an array). Caller frees. */
char *rtr_model_config_to_json(const rtr_model_config *cfg);
/* Parses and validates what rtr_model_config_to_json wrote; name is used in
 * errors. RTR_E_CORRUPT on a malformed object, RTR_E_INVALID on bad sizes. */
int rtr_model_config_from_json(const char *json, const char *name, rtr_model_config *cfg);

/* One parameter tensor: a slice [off, off + n) of the parameter buffer. */
typedef struct rtr_model_param {
    char name[32];       /* as in docs/model.md, e.g. "h.2.cca_kv" */
    int ndim;            /* 1 or 2 */
    int64_t shape[2];
    size_t off, n;
    uint8_t decay;       /* weight decay applies (matrices) */
    uint8_t retrieval;   /* part of the retrieval path (encoder, CCA) */
} rtr_model_param;

typedef struct rtr_model rtr_model;

/* The number of parameters (floats) of a configuration that passed
 * rtr_model_config_finish, computed without allocating them (a file's
 * counts are checked against it first). RTR_E_NOMEM. */
int rtr_model_config_nparams(const rtr_model_config *cfg, size_t *nparams);

/* Allocates a model for batches of up to max_B sequences of cfg->T tokens
 * (cfg must have passed rtr_model_config_finish). Parameters are zero until
 * rtr_model_init or a load. */
int rtr_model_new(const rtr_model_config *cfg, int max_B, rtr_model **out);
void rtr_model_free(rtr_model *m);   /* NULL-safe */

const rtr_model_config *rtr_model_cfg(const rtr_model *m);
size_t rtr_model_nparams(const rtr_model *m);         /* floats */
int rtr_model_ntensors(const rtr_model *m);
const rtr_model_param *rtr_model_tensor(const rtr_model *m, int i);
const rtr_model_param *rtr_model_find(const rtr_model *m, const char *name);   /* NULL if absent */
float *rtr_model_params(rtr_model *m);                /* the parameter buffer */
float *rtr_model_grads(rtr_model *m);                 /* NULL before the first backward */
/* The AdamW moments (NULL before the first update) and the step count. */
float *rtr_model_adam_m(rtr_model *m);
float *rtr_model_adam_v(rtr_model *m);
int64_t *rtr_model_adam_step(rtr_model *m);
/* Allocates gradients and moments now (for a resume that fills them). */
int rtr_model_alloc_train(rtr_model *m);

/* Random initialisation (docs/model.md), deterministic in seed. */
void rtr_model_init(rtr_model *m, uint64_t seed);

/* Forward pass over B <= max_B sequences of T tokens (T <= cfg.T, a
 * multiple of m):
 *   idx (B, T) token ids in [0, V);
 *   targets (B, T) or NULL: ids, or -1 for positions that do not count;
 *   nbr (B, T/m, K, R) or NULL: neighbour tokens, -1 where missing.
 *       NULL turns retrieval off: the CCA layers and the encoder are
 *       skipped, which gives exactly the logits of all-missing neighbours.
 * *loss (if targets and loss are not NULL) gets the mean cross-entropy.
 * The activations are kept for rtr_model_backward. Out-of-range tokens are
 * RTR_E_INVALID. */
int rtr_model_forward(rtr_model *m, const int32_t *idx, const int32_t *targets, const int32_t *nbr, int B, int T,
                      float *loss);
/* The logits of the last forward pass: (B, T, V). */
const float *rtr_model_logits(const rtr_model *m);

/* Sets all gradients to zero (allocating them, the moments and the backward
 * scratch on first use). RTR_E_NOMEM when they cannot be allocated. */
int rtr_model_zero_grad(rtr_model *m);
/* Backward pass of the last forward pass (which must have had targets):
 * ACCUMULATES d(mean loss)/d(param) into the gradients. Frozen parameters
 * (rtr_model_freeze) get no gradient. RTR_E_INVALID without such a forward
 * pass or before rtr_model_zero_grad; RTR_E_NOMEM when OpenMP has more
 * threads than at rtr_model_zero_grad and their scratch cannot be allocated. */
int rtr_model_backward(rtr_model *m);

/* RETRO-fitting: when on, only the retrieval path (enc.*, h.*.cca_*) is
 * trained; the decoder is frozen (no gradients, no updates, no decay). */
void rtr_model_freeze_decoder(rtr_model *m, int on);

typedef struct rtr_adamw {
    float beta1, beta2, eps, weight_decay, clip;   /* clip <= 0: no clipping */
} rtr_adamw;
void rtr_adamw_default(rtr_adamw *hp);   /* 0.9, 0.95, 1e-8, 0.1, 1.0 */

/* One AdamW step at learning rate lr over the trained parameters (PyTorch's
 * AdamW; docs/model.md). Returns the global gradient norm before clipping,
 * or a negative status when the moments cannot be allocated. */
float rtr_model_adamw(rtr_model *m, const rtr_adamw *hp, float lr);

/* Warm-up then cosine decay to lr/10 (docs/model.md). step is 0-based. */
float rtr_lr_schedule(float lr, int64_t step, int64_t warmup, int64_t total);

/* Floating-point operations of one training step (forward + backward) on
 * B sequences of T tokens, counting matrix products and attention
 * (2 per multiply-add; backward twice forward), with or without retrieval. */
double rtr_model_train_flops(const rtr_model_config *cfg, int B, int T, int retrieval);

/* Bytes of the activation buffer for max_B sequences, and of the backward
 * pass's scratch (allocated with the gradients; with the kernels' per-thread
 * part for OpenMP's present thread count). */
size_t rtr_model_act_bytes(const rtr_model *m);
size_t rtr_model_scratch_bytes(const rtr_model *m);

#endif
