/* test_infer.c - incremental decoding: the logits of KV-cached generation
 * equal those of a full forward pass over the same tokens with the same
 * neighbours, token by token, in uneven pieces, with retrieval off, and
 * across a context shift; complete prompt chunks are retrieved in one call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/status.h"
#include "model/infer.h"
#include "model/retro.h"

enum { V = 48, TT = 16, M = 4, K = 2, R = 8, KR = K * R, NTOK = 64 };

static int32_t g_tok[NTOK];
static int32_t g_nbr[NTOK / M][KR];   /* the neighbours of stream chunk u */
static int g_calls, g_chunks;

static int retrieve(void *ctx, const int32_t *chunks, int n, int64_t first, int32_t *nbr) {
    (void)ctx;
    g_calls++;
    g_chunks += n;
    for (int u = 0; u < n; u++) {
        /* the session hands over the right tokens */
        assert_memory_equal(chunks + u * M, g_tok + (first + u) * M, M * sizeof(int32_t));
        memcpy(nbr + u * KR, g_nbr[first + u], sizeof g_nbr[0]);
    }
    return RTR_OK;
}

/* The same for several sessions at once (rtr_batch_feed): one retrieve call each, counted once. */
static int g_many;
static int retrieve_many(void *const *ctx, const int32_t *chunks, int n, const int64_t *first, int32_t *nbr) {
    g_many++;
    for (int i = 0; i < n; i++) {
        int rc = retrieve(ctx[i], chunks + i * M, 1, first[i], nbr + i * KR);
        if (rc) return rc;
    }
    return RTR_OK;
}

static rtr_model *model(void) {
    rtr_model_config c;
    rtr_model_config_default(&c, V);
    c.C = 16;
    c.L = 4;
    c.NH = 2;
    c.T = TT;
    c.m = M;
    c.K = K;
    c.R = R;
    c.EC = 8;
    assert_int_equal(rtr_model_config_finish(&c), RTR_OK);
    rtr_model *m;
    assert_int_equal(rtr_model_new(&c, 2, &m), RTR_OK);   /* two: a batch encodes two chunks together */
    rtr_model_init(m, 77);
    float *w = rtr_model_params(m);
    for (size_t i = 0; i < rtr_model_nparams(m); i++) w[i] *= 6.0f;   /* every path loud */
    return m;
}

static void setup_data(void) {
    uint64_t s = 3;
    for (int i = 0; i < NTOK; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        g_tok[i] = (int32_t)((s >> 33) % V);
    }
    for (int u = 0; u < NTOK / M; u++)
        for (int j = 0; j < KR; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            g_nbr[u][j] = (int32_t)((s >> 33) % V);
        }
    for (int j = 0; j < R; j++) g_nbr[1][j] = -1;           /* a missing neighbour */
    for (int j = R - 3; j < KR; j++) g_nbr[2][j] = -1;      /* a short one */
}

/* The full forward's logits over window [w0, w0 + TT) of the stream. */
static float *full(rtr_model *m, int w0, int retrieval) {
    int32_t nbr[TT / M][KR];
    for (int u = 0; u < TT / M; u++) memcpy(nbr[u], g_nbr[w0 / M + u], sizeof nbr[u]);
    assert_int_equal(rtr_model_forward(m, g_tok + w0, NULL, retrieval ? &nbr[0][0] : NULL, 1, TT, NULL), RTR_OK);
    float *l = malloc(TT * V * sizeof(float));
    memcpy(l, rtr_model_logits(m), TT * V * sizeof(float));
    return l;
}

static void near(const float *a, const float *b, const char *what, int pos) {
    for (int v = 0; v < V; v++)
        if (fabsf(a[v] - b[v]) > 2e-4f * fmaxf(1.0f, fabsf(b[v])))
            fail_msg("%s: position %d, logit %d: cached %.7g, full %.7g", what, pos, v, a[v], b[v]);
}

static void test_token_by_token_and_pieces(void **state) {
    (void)state;
    setup_data();
    rtr_model *m = model();
    for (int retrieval = 0; retrieval < 2; retrieval++) {
        float *want = full(m, 0, retrieval);
        rtr_session *s;
        assert_int_equal(rtr_session_new(m, &s), RTR_OK);
        rtr_session_set_retrieval(s, retrieval ? retrieve : NULL, NULL);
        const float *lg;
        for (int p = 0; p < TT; p++) {
            assert_int_equal(rtr_session_feed(s, g_tok + p, 1, &lg), RTR_OK);
            near(lg, want + p * V, retrieval ? "token by token" : "token by token, retrieval off", p);
        }
        /* uneven pieces: the logits after each piece */
        int pieces[] = {3, 5, 1, 7};
        rtr_session_reset(s);
        g_calls = g_chunks = 0;
        for (int i = 0, p = 0; i < 4; p += pieces[i], i++) {
            assert_int_equal(rtr_session_feed(s, g_tok + p, pieces[i], &lg), RTR_OK);
            near(lg, want + (p + pieces[i] - 1) * V, "pieces", p + pieces[i] - 1);
        }
        if (retrieval) {
            assert_int_equal(g_chunks, TT / M);   /* every chunk retrieved once */
            assert_int_equal(g_calls, 2);         /* pieces 2 (chunks 0, 1) and 4 (chunks 2, 3) */
        }
        /* a whole prompt: its complete chunks in ONE call */
        rtr_session_reset(s);
        g_calls = g_chunks = 0;
        assert_int_equal(rtr_session_feed(s, g_tok, TT - 1, &lg), RTR_OK);
        near(lg, want + (TT - 2) * V, "prompt", TT - 2);
        if (retrieval) {
            assert_int_equal(g_calls, 1);
            assert_int_equal(g_chunks, TT / M - 1);
        }
        rtr_session_free(s);
        free(want);
    }
    rtr_model_free(m);
}

static void test_context_shift(void **state) {
    (void)state;
    setup_data();
    rtr_model *m = model();
    rtr_session *s;
    assert_int_equal(rtr_session_new(m, &s), RTR_OK);
    rtr_session_set_retrieval(s, retrieve, NULL);
    const float *lg;
    /* fill the window, then go on: the window becomes stream [8, 24) */
    assert_int_equal(rtr_session_feed(s, g_tok, TT, &lg), RTR_OK);
    float *want = full(m, TT / 2, 1);
    for (int t = TT; t < TT + TT / 2; t++) {
        assert_int_equal(rtr_session_feed(s, g_tok + t, 1, &lg), RTR_OK);
        near(lg, want + (t - TT / 2) * V, "after the shift", t);
    }
    assert_int_equal(rtr_session_tokens(s), TT + TT / 2);
    free(want);
    /* bad tokens */
    int32_t bad = V;
    assert_int_equal(rtr_session_feed(s, &bad, 1, &lg), RTR_E_INVALID);
    rtr_session_free(s);
    rtr_model_free(m);
}

/* Sessions at different points of the stream, one with retrieval off, fed
 * together: each one's logits are those of feeding it alone (to rounding:
 * the batched products sum in another order), across a context shift, and
 * exactly those with a batch of one. The two with retrieval complete their
 * chunks in the same steps: retrieved in one call of their many function,
 * their neighbours encoded in one pass of the encoder. */
static void test_batch(void **state) {
    (void)state;
    setup_data();
    rtr_model *m = model();
    enum { B = 3, STEPS = 24 };
    int start[B] = {5, 1, 0}, retrieval[B] = {1, 1, 0};
    rtr_session *bs[B], *ref[B];
    const float *lg, *blg[B];
    for (int i = 0; i < B; i++) {
        assert_int_equal(rtr_session_new(m, &bs[i]), RTR_OK);
        assert_int_equal(rtr_session_new(m, &ref[i]), RTR_OK);
        rtr_session_set_retrieval(bs[i], retrieval[i] ? retrieve : NULL, NULL);
        rtr_session_set_retrieval_many(bs[i], retrieve_many);
        rtr_session_set_retrieval(ref[i], retrieval[i] ? retrieve : NULL, NULL);
        if (start[i]) {
            assert_int_equal(rtr_session_feed(bs[i], g_tok, start[i], &lg), RTR_OK);
            assert_int_equal(rtr_session_feed(ref[i], g_tok, start[i], &lg), RTR_OK);
        }
    }
    rtr_batch *b;
    assert_int_equal(rtr_batch_new(m, 4, &b), RTR_OK);
    g_calls = g_chunks = g_many = 0;
    for (int t = 0; t < STEPS; t++) {
        int32_t tok[B];
        for (int i = 0; i < B; i++) tok[i] = g_tok[start[i] + t];
        assert_int_equal(rtr_batch_feed(b, bs, tok, B, blg), RTR_OK);
        for (int i = 0; i < B; i++) {
            assert_int_equal(rtr_session_feed(ref[i], &tok[i], 1, &lg), RTR_OK);
            near(blg[i], lg, "batched", start[i] + t);
        }
    }
    /* the batched retrievals: one a completed chunk of the sessions with retrieval (and as many in the
     * reference sessions) */
    assert_int_equal(g_chunks, 2 * ((start[0] + STEPS) / M - start[0] / M + (start[1] + STEPS) / M - start[1] / M));
    assert_int_equal(g_many, STEPS / M);   /* both sessions' chunks, in one call a step */
    for (int i = 0; i < B; i++) assert_int_equal(rtr_session_tokens(bs[i]), start[i] + STEPS);
    /* a batch of one is the one-session step exactly (from the same history) */
    rtr_session_reset(bs[0]);
    rtr_session_reset(ref[0]);
    assert_int_equal(rtr_session_feed(bs[0], g_tok, 7, &lg), RTR_OK);
    assert_int_equal(rtr_session_feed(ref[0], g_tok, 7, &lg), RTR_OK);
    int32_t x = g_tok[7];
    assert_int_equal(rtr_batch_feed(b, bs, &x, 1, blg), RTR_OK);
    assert_int_equal(rtr_session_feed(ref[0], &x, 1, &lg), RTR_OK);
    assert_memory_equal(blg[0], lg, V * sizeof(float));
    /* refused: a session twice, too many, a bad token */
    rtr_session *twice[2] = {bs[0], bs[0]};
    int32_t two[2] = {1, 2};
    assert_int_equal(rtr_batch_feed(b, twice, two, 2, blg), RTR_E_INVALID);
    assert_int_equal(rtr_batch_feed(b, bs, two, 5, blg), RTR_E_INVALID);
    int32_t bad = V;
    assert_int_equal(rtr_batch_feed(b, bs, &bad, 1, blg), RTR_E_INVALID);
    rtr_batch_free(b);
    for (int i = 0; i < B; i++) {
        rtr_session_free(bs[i]);
        rtr_session_free(ref[i]);
    }
    rtr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_by_token_and_pieces),
        cmocka_unit_test(test_context_shift),
        cmocka_unit_test(test_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
