/*
 * nn_base: what every file of the neural-network core shares: the always-on assertion, the
 * reporting callback (the math library never prints), the activation layout and small helpers.
 *
 * Activation layout inside a net is "CNHW": for a batch of n samples with c channels of h x w,
 * element (sample i, channel k, row y, col x) is at ((k * n + i) * h + y) * w + x. Vectors (Linear
 * layers, logits) are the special case h = w = 1, i.e. feature-major [features x n]. With this
 * layout a convolution over the whole batch is one GEMM (weights [out x in*k*k] times im2col
 * columns [in*k*k x n*oh*ow]) whose result is already the next layer's input, a BatchNorm channel
 * is one contiguous run, and a Linear layer is W [out x in] times X [in x n]. Data enters and
 * leaves the net as NCHW (PyTorch's layout); only the net's edges transpose.
 */
#ifndef NN_BASE_H
#define NN_BASE_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* Bugs and broken invariants only (never input): print file:line and abort. */
#define NN_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Error codes of the nn library (negative); nn_strerror() describes them. */
enum nn_err {
    NN_OK = 0,
    NN_ERR_NOMEM = -1,   /* allocation failed */
    NN_ERR_ARG = -2,     /* invalid argument (unknown model, bad size, ...) */
    NN_ERR_SHAPE = -3,   /* shapes do not fit together */
    NN_ERR_NOTFOUND = -4 /* named tensor or layer does not exist */
};
const char *nn_strerror(int code);

/* Messages from the library (warnings, errors with detail) go to this callback; default: none.
 * level: 0 debug, 1 info, 2 warn, 3 error. */
typedef void (*nn_report_fn)(int level, const char *msg, void *user);
void nn_set_report(nn_report_fn fn, void *user);
void nn_report(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation helpers: 64-byte aligned, zero-filled; NULL on failure. Free with nn_free(). */
void *nn_alloc(size_t bytes);
void nn_free(void *p);

/* Seeded random numbers (splitmix64 / xoshiro-style), reproducible across platforms. */
struct nn_rng {
    unsigned long long s[4]; /* generator state */
};
void nn_rng_seed(struct nn_rng *r, unsigned long long seed);
unsigned long long nn_rng_next(struct nn_rng *r);
float nn_rng_uniform(struct nn_rng *r); /* [0, 1) */
float nn_rng_normal(struct nn_rng *r);  /* standard normal */

/* Set the number of threads used by GEMMs and by the core's own parallel loops. */
void nn_set_threads(int threads);
int nn_get_threads(void);

#endif
