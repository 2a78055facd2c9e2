/* test_quote.c - the sentences of passages that answer a question (retriever/quote.c): splitting, byte
 * spans, rare words counting most, function words ignored, overlapping passages quoted once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/status.h"
#include "retriever/quote.h"

static const char A[] = "The harbour was busy. Ferries leave twice a day from the north pier!\n\n"
                        "The keeper of the lighthouse is Agnes Ploughwright? Boats were everywhere.";
static const char B[] = "Everywhere the boats came and went, and the harbour master counted them.";

static void test_best_sentence_and_span(void **state) {
    (void)state;
    rtr_passage p[] = {{B, strlen(B), 500}, {A, strlen(A), 1000}};
    rtr_quote q[4];
    size_t n;
    assert_int_equal(rtr_quotes("Who is the keeper of the lighthouse?", 36, p, 2, 4, q, &n), RTR_OK);
    assert_true(n >= 1);
    const char *want = "The keeper of the lighthouse is Agnes Ploughwright?";
    assert_int_equal(q[0].passage, 1);
    assert_int_equal(q[0].len, strlen(want));
    assert_memory_equal(A + q[0].off, want, q[0].len);
    assert_int_equal(q[0].byte_start, 1000 + (uint64_t)(strstr(A, want) - A));
    assert_int_equal(q[0].byte_end, q[0].byte_start + strlen(want));
    for (size_t i = 1; i < n; i++) assert_true(q[i].score <= q[i - 1].score);
}

static void test_function_words_and_plurals(void **state) {
    (void)state;
    rtr_passage p[] = {{A, strlen(A), 0}};
    rtr_quote q[4];
    size_t n;
    /* only function words: nothing to quote */
    assert_int_equal(rtr_quotes("What is the of a?", 17, p, 1, 4, q, &n), RTR_OK);
    assert_int_equal(n, 0);
    /* "ferry" does not match "Ferries", but "piers" matches "pier" */
    assert_int_equal(rtr_quotes("piers", 5, p, 1, 4, q, &n), RTR_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(A + q[0].off, "north pier"));
}

static void test_rare_word_wins_and_overlap_once(void **state) {
    (void)state;
    /* "harbour" is in two sentences, "master" in one: the master's sentence is first */
    rtr_passage p[] = {{A, strlen(A), 0}, {B, strlen(B), 0}, {B, strlen(B), 0}};
    rtr_quote q[8];
    size_t n;
    assert_int_equal(rtr_quotes("harbour master", 14, p, 3, 8, q, &n), RTR_OK);
    assert_int_equal(n, 2);   /* B's sentence once, though two passages hold it */
    assert_int_equal(q[0].passage, 1);
    assert_true(q[0].score > q[1].score);
    assert_int_equal(q[1].passage, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_best_sentence_and_span),
        cmocka_unit_test(test_function_words_and_plurals),
        cmocka_unit_test(test_rare_word_wins_and_overlap_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
