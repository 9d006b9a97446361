/*
 * nn_base: error strings, the report callback, aligned allocation, the seeded RNG and threads.
 */
#include "nn_base.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <string.h>

#define NN_ALIGN 64
#define NN_REPORT_MAX 512

static nn_report_fn s_report_fn;
static void *s_report_user;
static int s_threads = 1;

const char *nn_strerror(int code)
{
    switch (code) {
    case NN_OK:
        return "success";
    case NN_ERR_NOMEM:
        return "out of memory";
    case NN_ERR_ARG:
        return "invalid argument";
    case NN_ERR_SHAPE:
        return "shape mismatch";
    case NN_ERR_NOTFOUND:
        return "not found";
    default:
        return "unknown error";
    }
}

void nn_set_report(nn_report_fn fn, void *user)
{
    s_report_fn = fn;
    s_report_user = user;
}

void nn_report(int level, const char *fmt, ...)
{
    if (!s_report_fn)
        return;
    char msg[NN_REPORT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_report_fn(level, msg, s_report_user);
}

void *nn_alloc(size_t bytes)
{
    size_t rounded = (bytes + NN_ALIGN - 1) / NN_ALIGN * NN_ALIGN;
    if (rounded == 0)
        rounded = NN_ALIGN;
    void *p = aligned_alloc(NN_ALIGN, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

void nn_free(void *p)
{
    free(p);
}

static unsigned long long s_splitmix(unsigned long long *x)
{
    unsigned long long z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void nn_rng_seed(struct nn_rng *r, unsigned long long seed)
{
    unsigned long long x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = s_splitmix(&x);
}

static unsigned long long s_rotl(unsigned long long x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
unsigned long long nn_rng_next(struct nn_rng *r)
{
    unsigned long long *s = r->s;
    unsigned long long result = s_rotl(s[1] * 5, 7) * 9;
    unsigned long long t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

float nn_rng_uniform(struct nn_rng *r)
{
    return (float)(nn_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float nn_rng_normal(struct nn_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so that log is finite. */
    double u1 = ((double)(nn_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(nn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void nn_set_threads(int threads)
{
    if (threads < 1)
        threads = 1;
    s_threads = threads;
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
}

int nn_get_threads(void)
{
    return s_threads;
}
