/*
 * rng.h - the splitmix64 generator and its mixing function, for everything
 * in retro that draws deterministic numbers from a seed (initialisation, data
 * order, sampling, the hash embedder's projection). Header-only.
 */
#ifndef RTR_RNG_H
#define RTR_RNG_H

#include <stdint.h>

/* splitmix64's finaliser: a bijection of 64-bit values that spreads every
 * input bit over the output. */
static inline uint64_t rtr_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The next value of the splitmix64 sequence in *state. */
static inline uint64_t rtr_splitmix64(uint64_t *state) { return rtr_mix64(*state += 0x9E3779B97F4A7C15ull); }

/* z's top 53 bits as a double in [0, 1). */
static inline double rtr_unit53(uint64_t z) { return (double)(z >> 11) * (1.0 / 9007199254740992.0); }

#endif
