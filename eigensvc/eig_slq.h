/*
 * eig_slq: the Hessian's trace and its eigenvalue density from Hessian-vector products alone, as
 * PyHessian computes them.
 *
 * Trace (Hutchinson): for Rademacher vectors v (entries +-1), E[v' H v] = tr(H); the estimate is
 * the mean over `samples` vectors, with its standard error (the sample standard deviation over
 * sqrt(samples)).
 *
 * Density (stochastic Lanczos quadrature): each of `runs` Lanczos runs of `steps` products from a
 * normalised Rademacher vector gives the nodes (eigenvalues of its tridiagonal matrix) and weights
 * (squared first components of their eigenvectors) of a Gauss quadrature of v' f(H) v; averaged
 * over the runs, sum_i w_i g(t - theta_i) with a Gaussian g of width sigma approximates the
 * spectral density (1/n) sum_j g(t - lambda_j), which integrates to 1.
 */
#ifndef EIG_SLQ_H
#define EIG_SLQ_H

#include <stddef.h>
#include <stdint.h>

#include "eig_lanczos.h"
#include "eig_power.h"

#define EIG_SLQ_MAX_RUNS 64 /* Lanczos runs of one density at most */

struct eig_trace_result {
    double trace;     /* the mean of v' H v */
    double std_error; /* its standard error (0 for one sample) */
    int samples;      /* vectors used */
};

/* Hutchinson's estimate of tr(H) from `samples` (>= 1) Rademacher vectors drawn from seed, for
 * vectors of n floats. 0, RT_ERR_ARG, RT_ERR_NOMEM, RT_ERR_FORMAT (a product not finite), or the
 * callback's code. */
int eig_trace(size_t n, int samples, uint64_t seed, eig_power_hvp_fn hvp, void *user,
              struct eig_trace_result *out);

struct eig_slq_config {
    int runs;      /* Lanczos runs, in [1, EIG_SLQ_MAX_RUNS] */
    int steps;     /* products per run, in [1, EIG_LANCZOS_MAX_ITER] */
    uint64_t seed; /* seed of the first run's start vector (the others follow from it) */
};

/* The quadratures of every run: run r has m[r] nodes and weights. */
struct eig_slq_result {
    int runs;
    int32_t m[EIG_SLQ_MAX_RUNS];
    double nodes[EIG_SLQ_MAX_RUNS][EIG_LANCZOS_MAX_ITER];
    double weights[EIG_SLQ_MAX_RUNS][EIG_LANCZOS_MAX_ITER];
    int hvps; /* products in all */
};

/* Run the quadratures (caller allocates *res: it is large). 0 or a negative rt_err code. */
int eig_slq_run(size_t n, const struct eig_slq_config *cfg, eig_power_hvp_fn hvp, void *user,
                struct eig_slq_result *res);

/* The smallest and largest node over every run. */
void eig_slq_range(const struct eig_slq_result *res, double *lo, double *hi);

/* The density smoothed with a Gaussian of width sigma (> 0) at `points` (>= 2) evenly spaced grid
 * points over [lo, hi] (grid and density: points doubles each). */
void eig_slq_density(const struct eig_slq_result *res, double sigma, double lo, double hi,
                     int points, double *grid, double *density);

#endif
