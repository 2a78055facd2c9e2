/* train.c - the training loop (see train.h). */
#include "model/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/crash.h"
#include "lib/progress.h"
#include "lib/rng.h"
#include "lib/status.h"

/* A permutation of [0, n) drawn from key: a 4-round Feistel network on the
 * smallest even power of two >= n, walking the cycle until the value falls
 * inside [0, n) (fewer than 4 steps on average). Stateless, O(1) memory. */
static uint64_t permute(uint64_t i, uint64_t n, uint64_t key) {
    int bits = 2;
    while ((1ull << bits) < n) bits += 2;
    int half = bits / 2;
    uint64_t mask = (1ull << half) - 1;
    do {
        uint64_t l = i >> half, r = i & mask;
        for (int round = 0; round < 4; round++) {
            uint64_t f = rtr_mix64(r ^ (key + 0x9E3779B97F4A7C15ull * (round + 1))) & mask;
            uint64_t t = l ^ f;
            l = r;
            r = t;
        }
        i = (l << half) | r;
    } while (i >= n);
    return i;
}

int64_t rtr_train_sequence(const rtr_train_source *src, uint64_t seed, int B, int64_t step, int b) {
    uint64_t pos = (uint64_t)step * (uint64_t)B + (uint64_t)b, n = (uint64_t)src->n_train;
    uint64_t epoch = pos / n;
    return (int64_t)permute(pos % n, n, rtr_mix64(seed ^ rtr_mix64(epoch + 1)));
}

/* Counted targets in a batch. */
static int64_t count_targets(const int32_t *t, size_t n) {
    int64_t c = 0;
    for (size_t i = 0; i < n; i++) c += t[i] >= 0;
    return c;
}

typedef struct batch {
    int32_t *idx, *tg, *nbr;
    size_t seq_nbr;   /* neighbour tokens per sequence */
} batch;

static int batch_alloc(batch *b, const rtr_model_config *c, int B, int retrieval) {
    size_t N = (size_t)B * c->T;
    b->seq_nbr = (size_t)(c->T / c->m) * c->K * c->R;
    b->idx = rtr_malloc(N * sizeof(int32_t));
    b->tg = rtr_malloc(N * sizeof(int32_t));
    b->nbr = retrieval ? rtr_malloc(b->seq_nbr * B * sizeof(int32_t)) : NULL;
    if (!b->idx || !b->tg || (retrieval && !b->nbr)) return rtr_seterr(RTR_E_NOMEM, "train: out of memory");
    return RTR_OK;
}

static void batch_free(batch *b) {
    rtr_free(b->idx);
    rtr_free(b->tg);
    rtr_free(b->nbr);
}

static int batch_get(const rtr_train_source *src, batch *bt, const rtr_model_config *c, int split, int b,
                     int64_t i, double *bytes) {
    double by = 0;
    int rc = src->get(src->ctx, split, i, bt->idx + (size_t)b * c->T, bt->tg + (size_t)b * c->T,
                      bt->nbr ? bt->nbr + (size_t)b * bt->seq_nbr : NULL, &by);
    *bytes += by;
    return rc;
}

int rtr_evaluate(rtr_model *m, const rtr_train_source *src, int split, int64_t n, int B, int retrieval, double *loss,
                 double *bpb) {
    return rtr_evaluate_shared(m, src, split, n, B, retrieval, NULL, loss, bpb);
}

int rtr_evaluate_shared(rtr_model *m, const rtr_train_source *src, int split, int64_t n, int B, int retrieval,
                        rtr_comm *comm, double *loss, double *bpb) {
    const rtr_model_config *c = rtr_model_cfg(m);
    int64_t total = split == RTR_SPLIT_TRAIN ? src->n_train : src->n_val;
    if (n <= 0 || n > total) n = total;
    *loss = *bpb = NAN;
    if (n == 0) return RTR_OK;
    int rank = comm ? rtr_comm_rank(comm) : 0, size = comm ? rtr_comm_size(comm) : 1;
    batch bt;
    int rc = batch_alloc(&bt, c, B, retrieval);
    double nats = 0, bytes = 0, counted = 0;
    for (int64_t s = 0, j = 0; !rc && s < n; s += B, j++) {
        if (j % size != rank) continue;
        int nb = (int)(n - s < B ? n - s : B);
        for (int b = 0; !rc && b < nb; b++) rc = batch_get(src, &bt, c, split, b, s + b, &bytes);
        float l = 0;
        if (!rc) rc = rtr_model_forward(m, bt.idx, bt.tg, bt.nbr, nb, c->T, &l);
        int64_t k = count_targets(bt.tg, (size_t)nb * c->T);
        nats += (double)l * k;
        counted += (double)k;
    }
    batch_free(&bt);
    if (size > 1) {
        double v[3] = {nats, bytes, counted};
        if (!(rc = rtr_comm_agree(comm, rc))) rc = rtr_comm_sum_f64(comm, v, 3);
        nats = v[0], bytes = v[1], counted = v[2];
    }
    if (rc) return rc;
    *loss = counted ? nats / counted : NAN;
    *bpb = bytes > 0 ? nats / log(2.0) / bytes : NAN;
    return RTR_OK;
}

static int save(rtr_model *m, const rtr_train_opts *o) {
    if (!o->out_dir || (o->comm && rtr_comm_rank(o->comm) != 0)) return RTR_OK;   /* rank 0 saves for the job */
    int rc = rtr_ckpt_save(m, o->out_dir, o->meta, 1);
    return rc < 0 ? rtr_errprefix(rc, "saving the checkpoint") : rc;
}

/* Data parallel: this rank's gradients (of the mean loss over its n counted targets in tg) weighted
 * by its share of the batch's counted targets and summed over the ranks; *loss becomes the batch's. */
static int reduce_grads(rtr_model *m, rtr_comm *cm, const int32_t *tg, size_t n, float *loss) {
    double k = (double)count_targets(tg, n), v[2] = {(double)*loss * k, k};
    int rc = rtr_comm_sum_f64(cm, v, 2);
    if (rc) return rc;
    float *g = rtr_model_grads(m), w = v[1] > 0 ? (float)(k / v[1]) : 0;
    size_t np = rtr_model_nparams(m);
    for (size_t i = 0; i < np; i++) g[i] *= w;
    *loss = v[1] > 0 ? (float)(v[0] / v[1]) : 0;
    return rtr_comm_sum_f32(cm, g, np);
}

int rtr_train(rtr_model *m, const rtr_train_source *src, const rtr_train_opts *o, rtr_train_result *res) {
    const rtr_model_config *c = rtr_model_cfg(m);
    memset(res, 0, sizeof *res);
    res->val_loss = res->val_bpb = NAN;
    if (src->n_train < 1) return rtr_seterr(RTR_E_INVALID, "train: no training sequences");
    if (o->B < 1 || o->steps < 0) return rtr_seterr(RTR_E_INVALID, "train: bad batch size or step count");
    rtr_comm *cm = o->comm;
    int rank = cm ? rtr_comm_rank(cm) : 0, size = cm ? rtr_comm_size(cm) : 1;
    if (size > o->B)
        return rtr_seterr(RTR_E_INVALID, "train: a batch of %d sequences cannot be shared by %d ranks", o->B, size);
    uint64_t lo, hi;   /* this rank's sequences of each step's batch */
    rtr_comm_share((uint64_t)o->B, rank, size, &lo, &hi);
    int Bm = (int)(hi - lo), quiet = rank != 0;
    int rc = rtr_model_alloc_train(m);
    if (rc < 0) return rc;
    int64_t step = *rtr_model_adam_step(m);
    batch bt;
    if ((rc = batch_alloc(&bt, c, Bm, o->retrieval)) < 0) {
        batch_free(&bt);
        return rc;
    }
    rtr_progress pr;
    rtr_progress_init(&pr, "train", (uint64_t)(o->steps - step), "steps", o->progress && !quiet);
    double t_train = 0, recent[10] = {0};   /* seconds in training steps (not validation or saving) */
    int64_t first = step, n_recent = 0;
    size_t N = (size_t)o->B * c->T;
    char extra[96];
    FILE *log = quiet ? NULL : o->log;
    while (step < o->steps) {
        uint64_t stop = o->stop && *o->stop;
        if (size > 1 && (rc = rtr_comm_sum_u64(cm, &stop, 1))) break;   /* a rank told to stop stops them all */
        if (stop) {
            rc = save(m, o);
            if (!rc) rc = rtr_seterr(RTR_E_INTERRUPTED, "interrupted at step %" PRId64 "%s", step,
                                     o->out_dir ? "; the checkpoint is saved" : "");
            break;
        }
        double bytes = 0, ts = rtr_now();
        if (src->at_step) src->at_step(src->ctx, step, o->steps);
        for (int b = 0; !rc && b < Bm; b++)
            rc = batch_get(src, &bt, c, RTR_SPLIT_TRAIN, b, rtr_train_sequence(src, o->seed, o->B, step, (int)lo + b),
                           &bytes);
        float loss = 0;
        if (!rc) rc = rtr_model_forward(m, bt.idx, bt.tg, bt.nbr, Bm, c->T, &loss);
        if (!rc) rc = rtr_model_zero_grad(m);
        if (!rc) rc = rtr_model_backward(m);
        if (size > 1 && !(rc = rtr_comm_agree(cm, rc))) rc = reduce_grads(m, cm, bt.tg, (size_t)Bm * c->T, &loss);
        if (rc) break;
        if (!isfinite(loss)) {
            rc = rtr_seterr(RTR_E_INVALID, "train: the loss is %g at step %" PRId64 " (try a lower --lr)", loss, step);
            break;
        }
        float lr = rtr_lr_schedule(o->lr, step, o->warmup, o->steps);
        float norm = rtr_model_adamw(m, &o->hp, lr);
        if (norm < 0) {
            rc = (int)norm;
            break;
        }
        step++;
        t_train += rtr_now() - ts;
        recent[n_recent++ % 10] = loss;
        double tps = (double)(step - first) * N / (t_train > 0 ? t_train : 1e-9);
        if (log) {
            fprintf(log, "{\"step\":%" PRId64 ",\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.4f,\"tokens_per_s\":%.1f}\n",
                    step, loss, lr, norm, tps);
            fflush(log);
        }
        snprintf(extra, sizeof extra, "loss %.4f  lr %.2e  %.0f tok/s", loss, lr, tps);
        rtr_progress_update(&pr, (uint64_t)(step - first), extra);
        int last = step == o->steps;
        if (src->n_val > 0 && ((o->eval_every > 0 && step % o->eval_every == 0) || last)) {
            if ((rc = rtr_evaluate_shared(m, src, RTR_SPLIT_VAL, o->eval_seqs, o->B, o->retrieval, cm, &res->val_loss,
                                          &res->val_bpb)) < 0)
                break;
            if (log) {
                fprintf(log, "{\"step\":%" PRId64 ",\"val_loss\":%.6f,\"val_bpb\":%.6f}\n", step, res->val_loss,
                        res->val_bpb);
                fflush(log);
            }
            if (o->progress && !quiet) {
                rtr_progress_finish(&pr);
                fprintf(stderr, "step %" PRId64 ": validation loss %.4f, %.4f bits per byte\n", step, res->val_loss,
                        res->val_bpb);
                if (!last) {   /* a fresh bar: its rate and ETA restart from here */
                    rtr_progress_init(&pr, "train", (uint64_t)(o->steps - first), "steps", o->progress && !quiet);
                    pr.done = (uint64_t)(step - first);
                    pr.t0 -= t_train;
                }
            }
        }
        if ((o->save_every > 0 && step % o->save_every == 0) || last) {
            if ((rc = save(m, o)) < 0) break;
            rtr_crash_point("train-saved");   /* lib/crash.h: the kill-and-resume tests */
        }
        res->tokens_per_s = tps;
    }
    rtr_progress_finish(&pr);
    int n = n_recent < 10 ? (int)n_recent : 10;
    for (int i = 0; i < n; i++) res->train_loss += (float)(recent[i] / n);
    res->steps = step;
    batch_free(&bt);
    return rc;
}
