/*
 * worker_synth: a synthetic deterministic model for the transport and the data-parallel tests,
 * the bench, and the role commands until the NN core and the loader are wired in.
 *
 * Linear least squares: sample i of the endless "dataset" has features x_i (n_params values in
 * [-1, 1]) and a target y_i, both pure functions of (seed, i). The loss of a sample is
 * 0.5 (x_i . w - y_i)^2, its gradient (x_i . w - y_i) x_i, exact. The "buffers" mimic BatchNorm
 * running statistics: b <- (1 - SYNTH_BN_MOMENTUM) b + SYNTH_BN_MOMENTUM * mean over the share of
 * x_i[0..n_buffers), which averages across workers exactly like one worker over the whole batch.
 */
#ifndef WORKER_SYNTH_H
#define WORKER_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "worker_loop.h"

#define WORKER_SYNTH_BN_MOMENTUM 0.1f /* running-statistics momentum of the fake buffers */

/* State of one synthetic model instance (one per worker thread). */
struct worker_synth {
    uint64_t seed;      /* data and initial-weight seed */
    uint64_t n_params;  /* features = parameters */
    uint64_t n_buffers; /* fake running statistics, <= n_params */
    float *x;           /* n_params scratch: one sample's features */
};

/* Initialise (allocates the scratch row); returns 0 or RT_ERR_NOMEM / RT_ERR_ARG. Free with
 * worker_synth_fini. */
int worker_synth_init(struct worker_synth *m, uint64_t seed, uint64_t n_params, uint64_t n_buffers);
void worker_synth_fini(struct worker_synth *m);

/* Deterministic initial weights (small, from the seed) and buffers (zero). */
void worker_synth_initial(const struct worker_synth *m, float *params, float *buffers);

/* Mean loss and gradient over samples [first, first + n): grads (overwritten), buffers updated as
 * above (unchanged when n == 0). Returns the mean loss (0 when n == 0). */
float worker_synth_grad(struct worker_synth *m, uint64_t first, uint32_t n, const float *params,
                        float *grads, float *buffers);

/* A worker_compute that runs the model: user must point to a struct worker_synth. Its `init`
 * fills worker_synth_initial. The samples of a step are epoch * 2^32 + epoch_offset + share. */
struct worker_compute worker_synth_compute(struct worker_synth *m);

#endif
