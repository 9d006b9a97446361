/*
 * eig_lanczos: the top eigenvalues of a symmetric operator (a Hessian through Hessian-vector
 * products) by the Lanczos iteration with full reorthogonalisation.
 *
 * From a seeded Gaussian unit vector v_1, each iteration j computes w = H v_j, alpha_j = v_j . w,
 * w -= alpha_j v_j + beta_{j-1} v_{j-1}, then removes from w its components along every earlier
 * v_i (twice: "twice is enough"), beta_j = |w|, v_{j+1} = w / beta_j. The Ritz values theta of the
 * tridiagonal T_j (alpha on the diagonal, beta beside it) approximate H's extreme eigenvalues; the
 * residual of a Ritz pair is |H y - theta y| = beta_j |s_j| (s_j the last component of its
 * eigenvector of T_j), with no extra product. It stops when the `top` largest Ritz values all
 * have relative residual <= tol (then an eigenvalue of H lies within tol |theta| of each), when
 * beta_j = 0 (an invariant subspace: the values are exact), or after max_iter products. Memory:
 * max_iter vectors of n floats (stated by eig_lanczos_bytes). Dot products in double.
 */
#ifndef EIG_LANCZOS_H
#define EIG_LANCZOS_H

#include <stddef.h>
#include <stdint.h>

#include "eig_power.h"

#define EIG_LANCZOS_MAX_ITER 256 /* largest Krylov basis */
#define EIG_LANCZOS_MAX_TOP 32   /* most eigenvalues asked for */

struct eig_lanczos_config {
    int32_t max_iter; /* most HVPs, in [top, EIG_LANCZOS_MAX_ITER] */
    int32_t top;      /* eigenvalues wanted, the largest (algebraic), in [1, EIG_LANCZOS_MAX_TOP] */
    double tol;       /* relative residual each must meet (>= 0) */
    uint64_t seed;    /* seed of the start vector */
    int rademacher;   /* start from a normalised Rademacher vector (+-1), not a Gaussian one */
    int all_steps;    /* run max_iter steps whatever the residuals (quadrature: eig_slq) */
};

struct eig_lanczos_result {
    int32_t k;                               /* values found: min(top, iterations) */
    double eigenvalues[EIG_LANCZOS_MAX_TOP]; /* the k largest Ritz values, decreasing */
    double residuals[EIG_LANCZOS_MAX_TOP];   /* their relative residuals */
    int32_t iterations;                      /* HVPs done */
    int32_t converged;                       /* 1: every one of the k met tol (and k == top) */
    int32_t m;                               /* size of the last tridiagonal T (= iterations) */
    double nodes[EIG_LANCZOS_MAX_ITER];      /* every eigenvalue of T, decreasing */
    double weights[EIG_LANCZOS_MAX_ITER];    /* the squared first component of each one's unit
                                                eigenvector: Gauss quadrature weights (sum 1) */
};

/* Bytes of the Krylov basis for vectors of n floats under cfg. */
size_t eig_lanczos_bytes(size_t n, const struct eig_lanczos_config *cfg);

/* Run on vectors of n floats with the product hvp (eig_power_hvp_fn: H v into hv). Returns 0 and
 * fills *res; RT_ERR_ARG for a bad configuration, RT_ERR_NOMEM, RT_ERR_FORMAT when a product is
 * not finite (naming the iteration), or the callback's negative code. */
int eig_lanczos_run(size_t n, const struct eig_lanczos_config *cfg, eig_power_hvp_fn hvp,
                    void *user, struct eig_lanczos_result *res);

#endif
