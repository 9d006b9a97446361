/*
 * rt_rng: the counter-based random numbers of the data path (splitmix64). A stream is a 64-bit
 * state derived from (seed, stream, epoch, item) by hashing, so any thread can reproduce the
 * numbers of any sample without shared state.
 */
#ifndef RT_RNG_H
#define RT_RNG_H

#include <stdint.h>

/* Stream identifiers, so that different uses of one seed are independent. */
enum rt_rng_stream {
    RT_RNG_PERMUTATION = 1, /* epoch permutations */
    RT_RNG_AUGMENT = 2,     /* per-sample augmentation */
};

/* splitmix64's output function: a bijective 64-bit mix. */
uint64_t rt_rng_mix(uint64_t z);

/* Initial state of the stream for (seed, stream, epoch, item). */
uint64_t rt_rng_seed(uint64_t seed, enum rt_rng_stream stream, uint64_t epoch, uint64_t item);

/* Next 64 random bits of the stream at *state. */
uint64_t rt_rng_next(uint64_t *state);

/* Uniform double in [0, 1). */
double rt_rng_uniform(uint64_t *state);

/* Uniform integer in [0, n] (n >= 0). */
int rt_rng_int(uint64_t *state, int n);

#endif
