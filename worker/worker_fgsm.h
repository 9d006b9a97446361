/*
 * worker_fgsm: FGSM adversarial samples for ABSA (Goodfellow et al.; Yao et al.).
 *
 * In a micro-batch of m samples, the first n = ceil(gamma * m) samples are replaced by
 *     x_adv = clamp(x + eps * sign(dL/dx), lo, hi)
 * where dL/dx comes from a callback (the caller runs the net with BatchNorm in eval mode on those n
 * samples and their labels, and backpropagates the loss to the input) and [lo, hi] is the input
 * range: by default the min and max over the whole micro-batch (before perturbation);
 * WORKER_FGSM_RANGE_ADV takes them over the n perturbed samples only, as HessianFlow's fgsm() does.
 * sign(0) = 0. n = 0 when gamma <= 0 (HessianFlow uses floor(gamma * m) and skips gamma <= 1/m;
 * ceil is the paper's and this project's rule). Buffers are allocated once by _new.
 */
#ifndef WORKER_FGSM_H
#define WORKER_FGSM_H

#include <stddef.h>
#include <stdint.h>

typedef struct worker_fgsm worker_fgsm_t;

/* Input gradient: for the first `count` samples of the micro-batch, x holds their inputs
 * (count * sample_len floats, sample-major); write dL/dx (same layout) into grad. Return 0 or a
 * negative error code, which worker_fgsm_apply passes back. */
typedef int (*worker_fgsm_grad_fn)(void *user, const float *x, int32_t count, float *grad);

/* Which samples define the clamping range. */
enum worker_fgsm_range {
    WORKER_FGSM_RANGE_BATCH = 0, /* min/max over the whole micro-batch */
    WORKER_FGSM_RANGE_ADV,       /* min/max over the perturbed samples (HessianFlow) */
};

/* Number of adversarial samples in a micro-batch of m: ceil(gamma * m) clamped to [0, m], 0 when
 * gamma <= 0 or m <= 0 (a relative 1e-9 slack keeps 0.3 * 10 at 3). */
int32_t worker_fgsm_count(double gamma, int32_t m);

/* Buffers for micro-batches of up to max_samples samples of sample_len floats. NULL on bad sizes
 * or no memory (detail in rt_err_msg()). Caller owns the result; free with worker_fgsm_destroy. */
worker_fgsm_t *worker_fgsm_new(int32_t max_samples, size_t sample_len);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void worker_fgsm_destroy(worker_fgsm_t **self_p);

/*
 * Perturb, in place, the first worker_fgsm_count(gamma, m) samples of x (m * sample_len floats).
 * *n_adv (if not NULL) receives that count. Returns 0; RT_ERR_ARG for m outside [0, max_samples],
 * a negative or non-finite eps, or non-finite gamma; the callback's negative code if it fails (x
 * is then unchanged). No allocation.
 */
int worker_fgsm_apply(worker_fgsm_t *self, float *x, int32_t m, double gamma, double eps,
                      enum worker_fgsm_range range, worker_fgsm_grad_fn grad, void *user,
                      int32_t *n_adv);

#endif
