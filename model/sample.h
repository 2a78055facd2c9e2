/*
 * sample.h - choosing the next token from logits: greedy, or sampling with
 * temperature, top-k and top-p (nucleus), from a seeded generator, so that
 * the same seed gives the same text.
 */
#ifndef RTR_SAMPLE_H
#define RTR_SAMPLE_H

#include <stdint.h>

typedef struct rtr_sampler {
    float temperature;   /* 0: greedy (the most likely token) */
    int top_k;           /* keep the k most likely tokens; 0: all */
    float top_p;         /* keep the smallest set whose probability reaches p; 1: all */
    uint64_t state;      /* generator state; set by rtr_sampler_init */
} rtr_sampler;

void rtr_sampler_init(rtr_sampler *s, float temperature, int top_k, float top_p, uint64_t seed);

/* The next token for logits (V). scratch: 2*V floats' room (ints and floats)
 * or NULL to allocate; returns -1 only if it cannot allocate. */
int32_t rtr_sample(rtr_sampler *s, const float *logits, int V, void *scratch);

#endif
