/*
 * train.h - the training loop: batches from a data source, AdamW with
 * warm-up and cosine decay, validation loss and bits-per-byte, periodic
 * atomic checkpoints, and exact resumption.
 *
 * The data come through a callback (model/ does not know about knowledge
 * bases): sequence i of the training or validation split as T input tokens,
 * T targets (-1 = not counted), the neighbours of its T/m chunks, and the
 * number of UTF-8 bytes its counted targets stand for (for bits-per-byte).
 *
 * Order: the training sequences are visited epoch by epoch, each epoch in a
 * fresh permutation drawn from (seed, epoch). Sequence b of step s is
 * therefore a function of (seed, s, b) alone, so a run resumed from the
 * checkpoint of step s (weights, AdamW moments and step) continues exactly
 * as the uninterrupted run would have.
 */
#ifndef RTR_TRAIN_H
#define RTR_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "lib/comm.h"
#include "lib/split.h"
#include "model/ckpt.h"
#include "model/retro.h"

typedef struct rtr_train_source {
    void *ctx;
    int64_t n_train, n_val;   /* sequences in each split */
    /* Fills idx (T), targets (T), nbr (T/m * K * R; only when nbr is not
     * NULL) and *bytes for sequence i of split. Returns a status. */
    int (*get)(void *ctx, int split, int64_t i, int32_t *idx, int32_t *targets, int32_t *nbr, double *bytes);
    /* Optional (NULL: none): told the step (of steps) whose training batch
     * the next get() calls fill, so a source can vary with progress (the
     * annealed curriculum of retriever/dataset.h). */
    void (*at_step)(void *ctx, int64_t step, int64_t steps);
} rtr_train_source;

typedef struct rtr_train_opts {
    int B;                     /* sequences per step (<= the model's max_B) */
    int64_t steps;             /* total optimizer steps */
    float lr;                  /* peak learning rate */
    int64_t warmup;            /* warm-up steps */
    rtr_adamw hp;
    uint64_t seed;             /* data order */
    int retrieval;             /* give the model neighbours */
    int64_t eval_every;        /* steps between validations (0: only at the end) */
    int64_t eval_seqs;         /* validation sequences per validation (0: all) */
    int64_t save_every;        /* steps between checkpoints (0: only at the end) */
    const char *out_dir;       /* checkpoint directory, or NULL */
    const rtr_ckpt_meta *meta; /* extra checkpoint metadata */
    int progress;              /* progress bar on stderr */
    FILE *log;                 /* JSON lines, one per step and per validation; may be NULL */
    volatile int *stop;        /* when it becomes non-zero: checkpoint and return RTR_E_INTERRUPTED */
    rtr_comm *comm;            /* data parallel over its ranks (NULL: this process alone): rank r takes its
                                * contiguous share of each step's B sequences (lib/comm.h, rtr_comm_share),
                                * the gradients are summed over the ranks, each weighted by its share of the
                                * counted targets, so that every rank makes the same update as one process
                                * with the whole batch (within float rounding); validation sequences are
                                * shared too; rank 0 alone saves, logs and shows progress */
} rtr_train_opts;

typedef struct rtr_train_result {
    int64_t steps;             /* the step reached */
    float train_loss;          /* mean over the last 10 steps */
    double val_loss, val_bpb;  /* the last validation (NAN if none) */
    double tokens_per_s;       /* training tokens (B*T per step) per second of this run */
} rtr_train_result;

/* Trains m from its current step (rtr_model_adam_step: 0 for a new model,
 * the checkpoint's for a resumed one) up to o->steps. */
int rtr_train(rtr_model *m, const rtr_train_source *src, const rtr_train_opts *o, rtr_train_result *res);

/* Mean loss (nats per counted token) and bits per byte over the first n
 * sequences of split (n <= 0: all), in batches of B. */
int rtr_evaluate(rtr_model *m, const rtr_train_source *src, int split, int64_t n, int B, int retrieval, double *loss,
                 double *bpb);
/* The same over the ranks of comm (a collective): batch j of B sequences on rank j mod ranks, the sums
 * gathered; every rank gets the result. */
int rtr_evaluate_shared(rtr_model *m, const rtr_train_source *src, int split, int64_t n, int B, int retrieval,
                        rtr_comm *comm, double *loss, double *bpb);

/* The training sequence used at position b of step s (exposed for tests). */
int64_t rtr_train_sequence(const rtr_train_source *src, uint64_t seed, int B, int64_t step, int b);

#endif
