/*
 * gen.h - the generation loop shared by `retro generate` and `retro ask`:
 * tokenize the prompt, feed it, sample, stream the text (never splitting a
 * UTF-8 sequence, holding back what could still become a stop sequence).
 */
#ifndef RTR_CLI_GEN_H
#define RTR_CLI_GEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/bpe.h"
#include "model/infer.h"

#define CLI_GEN_MAX_STOP 16

typedef struct cli_gen_opts {
    int max_tokens;
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
    const char *stop[CLI_GEN_MAX_STOP];
    int n_stop;
    FILE *stream;        /* text goes here as it is made (NULL: not streamed) */
} cli_gen_opts;

void cli_gen_opts_default(cli_gen_opts *o);   /* 128 tokens, 0.8, top-k 40, top-p 0.95, seed 1 */

typedef struct cli_gen_result {
    char *text;          /* the generated text (valid UTF-8, without the stop sequence) */
    size_t len;
    int prompt_tokens, tokens;
    const char *stopped; /* "length", "stop" or "end" (end-of-document token) */
    double tokens_per_s; /* generated tokens per second, after the prompt */
} cli_gen_result;

int cli_generate(rtr_session *s, const rtr_tokenizer *tok, const char *prompt, size_t plen, const cli_gen_opts *o,
                 cli_gen_result *res);
void cli_gen_result_free(cli_gen_result *r);

/* Writes s (n bytes; invalid UTF-8 replaced) as a JSON string. */
void cli_json_string(FILE *f, const char *s, size_t n);

#endif
