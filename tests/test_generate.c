/* test_generate.c - the generation loop (model/generate.c): each token's log probability and its likeliest
 * alternatives equal a naive log-softmax of the session's logits; greedy picks the likeliest; a stop sequence
 * keeps only the tokens that start before it; the step-by-step loop gives rtr_generate's text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/status.h"
#include "model/generate.h"

static rtr_tokenizer *g_tok;
static rtr_model *g_m;

static int setup(void **state) {
    (void)state;
    if (rtr_tokenizer_load(RETRO_SOURCE_DIR "/datasets/tokenizer.rtok", &g_tok)) return -1;
    rtr_model_config c;
    rtr_model_config_default(&c, (int)rtr_tokenizer_vocab_size(g_tok));
    c.C = 16;
    c.L = 2;
    c.NH = 2;
    c.T = 64;
    c.n_cca = 0;   /* a baseline: the loop, not retrieval, is under test */
    if (rtr_model_config_finish(&c) || rtr_model_new(&c, 1, &g_m)) return -1;
    rtr_model_init(g_m, 5);
    float *w = rtr_model_params(g_m);
    for (size_t i = 0; i < rtr_model_nparams(g_m); i++) w[i] *= 8.0f;   /* a peaked distribution */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    rtr_model_free(g_m);
    rtr_tokenizer_free(g_tok);
    return 0;
}

static void test_logprobs_naive(void **state) {
    (void)state;
    rtr_session *s;
    assert_int_equal(rtr_session_new(g_m, &s), RTR_OK);
    rtr_gen_opts o;
    rtr_gen_opts_default(&o);
    o.max_tokens = 12;
    o.temperature = 0;
    o.logprobs = 3;
    o.ignore_end = 1;
    rtr_gen_result res;
    assert_int_equal(rtr_generate(s, g_tok, "The harbour", 11, &o, &res), RTR_OK);
    assert_int_equal(res.tokens, 12);
    assert_int_equal(res.n_lp, 12);
    /* the reference: the same tokens fed one by one, each step's log-softmax by hand */
    rtr_session_reset(s);
    rtr_encoder *enc;
    rtr_u32vec ids = {0};
    assert_int_equal(rtr_encoder_new(g_tok, &enc), RTR_OK);
    assert_int_equal(rtr_encoder_encode(enc, (const uint8_t *)"The harbour", 11, &ids), RTR_OK);
    const float *lg;
    assert_int_equal(rtr_session_feed(s, (const int32_t *)ids.data, (int)ids.len, &lg), RTR_OK);
    int V = (int)rtr_tokenizer_vocab_size(g_tok);
    uint64_t off = 0;
    for (size_t i = 0; i < res.n_lp; i++) {
        const rtr_token_lp *l = &res.lp[i];
        double mx = -INFINITY, sum = 0;
        int arg = 0;
        for (int v = 0; v < V; v++)
            if (lg[v] > mx && v != (int)rtr_tokenizer_eod(g_tok)) mx = lg[v], arg = v;
        double all = -INFINITY;
        for (int v = 0; v < V; v++) all = fmax(all, lg[v]);
        for (int v = 0; v < V; v++) sum += exp(lg[v] - all);
        double lse = all + log(sum);
        assert_int_equal(l->token, arg);   /* greedy, the end token excluded */
        assert_true(fabs(l->logprob - (lg[arg] - lse)) < 1e-4);
        assert_int_equal(l->n_top, 3);
        for (int k = 0; k < 3; k++) {   /* the three likeliest, best first, each as the naive value */
            int better = 0;
            for (int v = 0; v < V; v++) better += lg[v] > lg[l->top[k]];
            assert_int_equal(better, k);
            assert_true(fabs(l->top_lp[k] - (lg[l->top[k]] - lse)) < 1e-4);
        }
        assert_int_equal(l->offset, off);
        size_t len;
        rtr_tokenizer_token(g_tok, (uint32_t)l->token, &len);
        off += len;
        assert_int_equal(rtr_session_feed(s, &l->token, 1, &lg), RTR_OK);
    }
    rtr_gen_result_free(&res);
    rtr_u32vec_free(&ids);
    rtr_encoder_free(enc);
    rtr_session_free(s);
}

static void test_stop_and_steps(void **state) {
    (void)state;
    rtr_session *s;
    assert_int_equal(rtr_session_new(g_m, &s), RTR_OK);
    rtr_gen_opts o;
    rtr_gen_opts_default(&o);
    o.max_tokens = 20;
    o.temperature = 0;
    o.logprobs = 1;
    o.ignore_end = 1;
    rtr_gen_result whole;
    assert_int_equal(rtr_generate(s, g_tok, "Once", 4, &o, &whole), RTR_OK);
    assert_true(whole.len >= 4);
    /* the step-by-step loop: the same text */
    rtr_session_reset(s);
    rtr_gen *g;
    assert_int_equal(rtr_gen_begin(s, g_tok, "Once", 4, &o, &g), RTR_OK);
    const float *lg = NULL;
    int32_t t;
    while (rtr_gen_next(g, lg, &t) == 1) assert_int_equal(rtr_session_feed(s, &t, 1, &lg), RTR_OK);
    rtr_gen_result steps;
    assert_int_equal(rtr_gen_finish(g, &steps), RTR_OK);
    assert_int_equal(steps.len, whole.len);
    assert_memory_equal(steps.text, whole.text, whole.len);
    /* a stop sequence inside the text: only the tokens that start before it keep their logprobs */
    char stop[3] = {whole.text[2], whole.text[3], 0};
    const char *first = strstr(whole.text, stop);
    o.stop[0] = stop;
    o.n_stop = 1;
    rtr_session_reset(s);
    rtr_gen_result cut;
    assert_int_equal(rtr_generate(s, g_tok, "Once", 4, &o, &cut), RTR_OK);
    assert_string_equal(cut.stopped, "stop");
    assert_int_equal(cut.len, (size_t)(first - whole.text));
    for (size_t i = 0; i < cut.n_lp; i++) assert_true(cut.lp[i].offset < cut.len);
    assert_true(cut.n_lp == 0 || cut.n_lp < whole.n_lp);
    rtr_gen_result_free(&whole);
    rtr_gen_result_free(&steps);
    rtr_gen_result_free(&cut);
    /* out of range */
    o.logprobs = RTR_GEN_MAX_LOGPROBS + 1;
    assert_int_equal(rtr_generate(s, g_tok, "x", 1, &o, &cut), RTR_E_INVALID);
    rtr_session_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logprobs_naive),
        cmocka_unit_test(test_stop_and_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
