/*
 * ops.h - the model's elementwise and matrix operations, each with its
 * backward pass. Tensors are row-major float arrays; shapes are in the
 * comments. Backward functions ACCUMULATE (+=) into their gradient outputs,
 * so a tensor used twice sums its gradients; callers zero gradients once per
 * step. Matrix products go through BLAS (cblas_sgemm), split between the
 * OpenMP threads (each making single-threaded BLAS calls); the rest is C with
 * OpenMP over rows (AVX2 where it pays: exp, tanh). Prefer these to direct
 * multi-threaded cblas_sgemm calls next to them: see model/ops.c.
 *
 * The operations never allocate: what they need besides their tensors comes
 * from the caller (model/retro.c and model/infer.c keep it in the model):
 *   - rotary tables (rtr_rope_table), filled once with rtr_rope_table_fill;
 *   - per-thread scratch for rtr_rmsnorm_backward (its gain gradient) and
 *     rtr_attention_backward: `scratch`, `scratch_bytes` bytes, 8-byte
 *     aligned, cut into slices of the size the operation's *_scratch
 *     function gives, one per thread; the call runs on at most
 *     scratch_bytes / slice threads, so omp_get_max_threads() slices use
 *     them all. A call uses the whole of it: concurrent calls need their own.
 *
 * Every operation here is checked in tests/test_ops.c against a naive
 * reference and its backward against finite differences.
 */
#ifndef RTR_OPS_H
#define RTR_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out (N, OC) = inp (N, C) @ w^T + b;  w (OC, C), b (OC) or NULL. The
 * products need no scratch. */
void rtr_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N, int C, int OC);
/* out (N, OC) += inp (N, C) @ w^T (no bias) */
void rtr_matmul_forward_acc(float *out, const float *inp, const float *w, int N, int C, int OC);
/* dinp (N, C) += dout @ w;  dw (OC, C) += dout^T @ inp;  db (OC) += sum_n dout.
 * Any of dinp, dw, db may be NULL (frozen or not needed). */
void rtr_matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int N,
                         int C, int OC);

/* RMSNorm: out (N, C) = x / sqrt(mean(x^2) + eps) * g;  g (C); rstd (N) saved
 * for the backward pass. eps = 1e-5. */
void rtr_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int C);
/* dx (N, C) += d/dx, dg (C) += d/dg of <dout, out>; either may be NULL.
 * Scratch (only with dg): per thread rtr_rmsnorm_backward_scratch(C) bytes,
 * C double partial sums of dg (added in thread order: deterministic for a
 * given thread count); scratch may be NULL when dg is. */
void rtr_rmsnorm_backward(float *dx, float *dg, void *scratch, size_t scratch_bytes, const float *dout,
                          const float *x, const float *g, const float *rstd, int N, int C);
size_t rtr_rmsnorm_backward_scratch(int C);   /* C doubles, rounded up to 64 bytes */

/* GELU, tanh approximation (as GPT-2): out (N). No scratch. */
void rtr_gelu_forward(float *out, const float *x, int N);
void rtr_gelu_backward(float *dx, const float *x, const float *dout, int N);

/* Softmax cross-entropy over V classes for N rows of logits (N, V).
 * targets (N): class ids, or -1 for rows that do not count. Returns the mean
 * loss over the counted rows (0 if none) and, if dlogits is not NULL, WRITES
 * (not accumulates) d(mean loss)/d(logits) into it (N, V). No scratch. */
float rtr_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int N, int V);

/* Rotary position embedding (RoPE, base 10000). The rotation of position p,
 * pair i of a head of size hs is the angle p * 10000^(-2i/hs); a table holds
 * its cos and sin, computed in double and rounded to float, for the
 * positions p0 .. p0 + npos - 1:
 *   cs (npos, hs): cs[(p - p0)*hs + 2i] = cos, cs[(p - p0)*hs + 2i + 1] = sin.
 * The table borrows cs (the caller's, rtr_rope_table_floats(hs, npos)
 * floats; it must outlive the table). */
typedef struct rtr_rope_table {
    const float *cs; /* (npos, hs) */
    int hs, p0, npos;
} rtr_rope_table;
size_t rtr_rope_table_floats(int hs, int npos);
/* Fills cs and returns the table over it. hs even >= 2, npos >= 0; p0 may be negative. */
rtr_rope_table rtr_rope_table_fill(float *cs, int hs, int p0, int npos);

/* x (B, T, NH, hs), hs even: each pair (x[2i], x[2i+1]) of a head at
 * position pos0 + t is rotated by the table's angle for it. out may equal x.
 * Dot products of rotated vectors depend only on the difference of their
 * positions. The table tab has head size hs and covers pos0 .. pos0 + T - 1
 * (asserted). No scratch besides the table. */
void rtr_rope_forward(float *out, const float *x, const rtr_rope_table *tab, int B, int T, int NH, int hs, int pos0);
/* dx += R^T dout (the inverse rotation); tab as for the forward pass. */
void rtr_rope_backward(float *dx, const float *dout, const rtr_rope_table *tab, int B, int T, int NH, int hs,
                       int pos0);

/* Scaled dot-product attention, NH heads of size hs:
 *   q (B, Tq, NH*hs), k and v (B, Tk, NH*hs), out (B, Tq, NH*hs),
 *   att (B, NH, Tq, Tk): the softmax probabilities, saved for backward.
 * causal (needs Tq == Tk): query t sees keys 0..t. kmask (B, Tk) or NULL:
 * keys with kmask 0 are never seen (missing neighbours). A query that sees
 * no key gets a zero output and zero gradients. The forward pass needs no
 * scratch. */
void rtr_attention_forward(float *out, float *att, const float *q, const float *k, const float *v, const uint8_t *kmask,
                           int B, int Tq, int Tk, int NH, int hs, int causal);
/* dq, dk, dv (shapes of q, k, v) += gradients; any may be NULL.
 * Tk <= RTR_ATT_MAX_KEYS (asserted).
 * Scratch (only with dq or dk; NULL otherwise allowed): per thread
 * rtr_attention_backward_scratch(Tq, Tk) bytes, the gradient of one block of
 * min(Tq, 64) queries' scores against the keys: (min(Tq, 64), Tk) floats. */
#define RTR_ATT_MAX_KEYS 8192
void rtr_attention_backward(float *dq, float *dk, float *dv, void *scratch, size_t scratch_bytes, const float *dout,
                            const float *att, const float *q, const float *k, const float *v, int B, int Tq, int Tk,
                            int NH, int hs);
size_t rtr_attention_backward_scratch(int Tq, int Tk);   /* rounded up to 64 bytes */

/* Chunked cross-attention's causal shift (RETRO, section 2.4). With chunks of
 * m tokens, L = T / m chunks per sequence, the queries that attend to the
 * neighbours of chunk u (0-based) are the last token of chunk u and the first
 * m - 1 tokens of chunk u + 1: sequence positions u*m + m - 1 + i, i < m.
 * The first m - 1 positions of a sequence attend to nothing.
 *   gather:  dst (B, L, m, C) <- h (B, T, C) at those positions; positions
 *            past T give zero rows, and rowmask (B, L, m) (if not NULL) says
 *            which rows are real (1) or padding (0).
 *   scatter: out (B, T, C) += src (B, L, m, C) at the same positions (its
 *            padding rows are dropped). Gather and scatter are each other's
 *            backward. T must be a multiple of m. No scratch. */
void rtr_cca_gather(float *dst, uint8_t *rowmask, const float *h, int B, int T, int C, int m);
void rtr_cca_scatter(float *out, const float *src, int B, int T, int C, int m);

#endif
