/*
 * eig_analysis: the `eig` command's Hessian analyses beyond the top eigenvalue, each printed as
 * one JSON line: the trace (Hutchinson) and the eigenvalue density (stochastic Lanczos quadrature,
 * with an optional PNG through gnuplot). See eig_slq.h for the estimators.
 */
#ifndef EIG_ANALYSIS_H
#define EIG_ANALYSIS_H

#include <jansson.h>
#include <stdint.h>

#include "eig_hvp.h"

/* Print j (stolen) as one compact line on stdout. 0, or -1 with the reason on stderr. */
int eig_print_json(json_t *j);

/* `eig --trace`: Hutchinson's trace of hv's Hessian from `samples` Rademacher vectors: prints
 * {trace, std_error, samples, hvps, seconds, ...}. Returns the exit status. */
int eig_analysis_trace(struct eig_hvp *hv, int samples, uint64_t seed);

/* `eig --density`: `runs` Lanczos quadratures of `steps` products; prints {grid, density,
 * sigma, lo, hi, runs, steps, hvps, nodes, weights, seconds} (the density Gaussian-smoothed with
 * sigma = 1% of the node range, over that range widened by 5 sigma); with png, also draws it
 * there with gnuplot. Returns the exit status. */
int eig_analysis_density(struct eig_hvp *hv, int runs, int steps, uint64_t seed, const char *png);

#endif
