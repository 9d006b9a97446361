/*
 * rt_rng: splitmix64 streams.
 */
#include "rt_rng.h"

#define S_GOLDEN 0x9e3779b97f4a7c15ULL /* splitmix64 increment */

uint64_t rt_rng_mix(uint64_t z)
{
    z += S_GOLDEN;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rt_rng_seed(uint64_t seed, enum rt_rng_stream stream, uint64_t epoch, uint64_t item)
{
    return rt_rng_mix(rt_rng_mix(rt_rng_mix(rt_rng_mix(seed) ^ (uint64_t)stream) ^ epoch) ^ item);
}

uint64_t rt_rng_next(uint64_t *state)
{
    *state += S_GOLDEN;
    return rt_rng_mix(*state);
}

double rt_rng_uniform(uint64_t *state)
{
    return (double)(rt_rng_next(state) >> 11) * (1.0 / 9007199254740992.0); /* 53 bits */
}

int rt_rng_int(uint64_t *state, int n)
{
    return (int)(rt_rng_next(state) % (uint64_t)(n + 1));
}
