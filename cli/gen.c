/* gen.c - the generation loop (see gen.h). */
#define _GNU_SOURCE
#include "cli/gen.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/buf.h"
#include "lib/progress.h"
#include "lib/status.h"
#include "lib/utf8.h"
#include "model/sample.h"

void cli_gen_opts_default(cli_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 128;
    o->temperature = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->seed = 1;
}

void cli_gen_result_free(cli_gen_result *r) {
    free(r->text);
    memset(r, 0, sizeof *r);
}

void cli_json_string(FILE *f, const char *s, size_t n) {
    rtr_buf fixed = {0};
    rtr_utf8_repair((const uint8_t *)s, n, &fixed);
    json_t *j = json_stringn(fixed.data ? (const char *)fixed.data : "", fixed.len);
    json_dumpf(j, f, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    json_decref(j);
    rtr_buf_free(&fixed);
}

/* The earliest stop sequence in text, or -1. */
static long find_stop(const rtr_buf *text, const cli_gen_opts *o) {
    long best = -1;
    for (int i = 0; i < o->n_stop; i++) {
        const char *hit = memmem(text->data, text->len, o->stop[i], strlen(o->stop[i]));
        if (hit && (best < 0 || hit - (const char *)text->data < best)) best = hit - (const char *)text->data;
    }
    return best;
}

/* Prints text[printed, end) repaired to valid UTF-8, where end leaves out
 * the last hold bytes (a stop sequence may still claim them) and, unless
 * final, a trailing sequence that is not complete yet. Returns the new end. */
static size_t stream_out(FILE *f, const rtr_buf *text, size_t printed, size_t hold, int final) {
    size_t end = text->len > hold ? text->len - hold : 0;
    if (end <= printed) return printed;
    for (size_t k = 1; !final && k <= 3 && k <= end - printed; k++) {
        uint8_t b = text->data[end - k];
        if ((b & 0xC0) == 0x80) continue;   /* a continuation byte: look further back */
        size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        if (k < need) end -= k;
        break;
    }
    if (end <= printed) return printed;
    rtr_buf fixed = {0};
    rtr_utf8_repair(text->data + printed, end - printed, &fixed);
    fwrite(fixed.data, 1, fixed.len, f);
    fflush(f);
    rtr_buf_free(&fixed);
    return end;
}

int cli_generate(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const cli_gen_opts *o,
                 cli_gen_result *res) {
    memset(res, 0, sizeof *res);
    rtr_encoder *enc = NULL;
    rtr_u32vec ids = {0};
    rtr_buf text = {0};
    void *scratch = NULL;
    uint32_t V = rtr_tokenizer_vocab_size(tok), eod = rtr_tokenizer_eod(tok);
    int rc = rtr_encoder_new(tok, &enc);
    if (!rc) rc = rtr_encoder_encode(enc, (const uint8_t *)prompt, plen, &ids);
    if (!rc && ids.len == 0) rc = rtr_u32vec_push(&ids, eod);   /* an empty prompt starts a document */
    scratch = rtr_malloc((size_t)V * 8);
    if (!rc && !scratch) rc = rtr_seterr(RTR_E_NOMEM, "generate: out of memory");
    const float *logits = NULL;
    if (!rc) rc = rtr_session_feed(s, (const int32_t *)ids.data, (int)ids.len, &logits);
    res->prompt_tokens = (int)ids.len;
    size_t hold = 0, printed = 0;
    for (int i = 0; i < o->n_stop; i++)
        if (strlen(o->stop[i]) > hold) hold = strlen(o->stop[i]);
    hold = hold ? hold - 1 : 0;
    rtr_sampler sm;
    rtr_sampler_init(&sm, o->temperature, o->top_k, o->top_p, o->seed);
    res->stopped = "length";
    double t0 = rtr_now();
    for (int i = 0; !rc && i < o->max_tokens; i++) {
        int32_t t = rtr_sample(&sm, logits, (int)V, scratch);
        if (t == (int32_t)eod) {
            res->stopped = "end";
            break;
        }
        res->tokens++;
        size_t len;
        const uint8_t *b = rtr_tokenizer_token(tok, (uint32_t)t, &len);
        if ((rc = rtr_buf_append(&text, b, len))) break;
        long at = find_stop(&text, o);
        if (at >= 0) {
            text.len = (size_t)at;
            res->stopped = "stop";
            break;
        }
        if (o->stream) printed = stream_out(o->stream, &text, printed, hold, 0);
        if (i + 1 < o->max_tokens) rc = rtr_session_feed(s, &t, 1, &logits);
    }
    double el = rtr_now() - t0;
    res->tokens_per_s = el > 0 ? res->tokens / el : 0;
    if (!rc && o->stream) stream_out(o->stream, &text, printed, 0, 1);
    if (!rc) {
        rtr_buf fixed = {0};
        rtr_utf8_repair(text.data, text.len, &fixed);
        rtr_buf_terminate(&fixed);
        res->text = (char *)fixed.data;
        res->len = fixed.len;
        if (!res->text && !(res->text = strdup(""))) rc = rtr_seterr(RTR_E_NOMEM, "out of memory");
    }
    rtr_encoder_free(enc);
    rtr_u32vec_free(&ids);
    rtr_buf_free(&text);
    rtr_free(scratch);
    return rc;
}
