/*
 * eig_power: top Hessian eigenvalue by power iteration over a Hessian-vector-product callback.
 *
 * Start from a seeded Gaussian vector v (normalised); each iteration computes hv = H v, the
 * Rayleigh quotient lambda_i = v . hv, the relative residual |H v - lambda_i v| / |lambda_i| =
 * sqrt(|hv|^2 - lambda_i^2) / |lambda_i| (v is a unit vector: no extra product) and the next
 * v = hv / |hv| (HessianFlow's get_eigen). It stops on the residual (residual <= tol: then an
 * eigenvalue of H lies within tol * |lambda| of the result) or, as HessianFlow does, on the
 * change |lambda_i - lambda_{i-1}| <= tol * |lambda_i| (relative; HessianFlow uses the absolute
 * difference), or after max_iter iterations (one HVP each). Presets: paper (10, 1e-2, stop on the
 * change: the reference's rule) and accurate (50, 1e-3, stop on the residual). Either way
 * `converged` says whether the residual met the tolerance.
 *
 * Power iteration converges to the eigenvector of the eigenvalue of LARGEST MAGNITUDE. When that
 * one is negative, the result is that negative eigenvalue (the Rayleigh quotient keeps its sign,
 * while v flips sign at each iteration); this is what HessianFlow reports, and what the ABS rule
 * then compares. When the top two magnitudes are close, convergence is slow and the change test
 * can stop early: the result is then a Rayleigh quotient of a mix of eigenvectors (a value inside
 * the spectrum's range, below the true top eigenvalue for a positive semi-definite H), its
 * residual is large and it is not reported as converged. If H v = 0 the result is 0
 * (converged). Dot products and norms accumulate in double; vectors are float.
 */
#ifndef EIG_POWER_H
#define EIG_POWER_H

#include <stddef.h>
#include <stdint.h>

typedef struct eig_power eig_power_t;

/* Hessian-vector product: write H v into hv (n floats; v and hv never alias). Return 0, or a
 * negative error code that eig_power_run passes back. */
typedef int (*eig_power_hvp_fn)(void *user, const float *v, float *hv);

enum eig_power_preset {
    EIG_POWER_PAPER = 0, /* 10 iterations, tol 1e-2 (HessianFlow's ABS setting) */
    EIG_POWER_ACCURATE,  /* 50 iterations, tol 1e-3 */
};

enum eig_power_stop {
    EIG_POWER_STOP_RESIDUAL = 0, /* |H v - lambda v| <= tol |lambda| */
    EIG_POWER_STOP_CHANGE,       /* |lambda_i - lambda_{i-1}| <= tol |lambda_i| (HessianFlow) */
};

struct eig_power_config {
    int32_t max_iter; /* most HVPs (>= 1) */
    double tol;       /* relative residual (and change) that stops (>= 0) */
    int32_t stop;     /* EIG_POWER_STOP_RESIDUAL or EIG_POWER_STOP_CHANGE */
    uint64_t seed;    /* seed of the Gaussian start vectors */
};

struct eig_power_result {
    double eigenvalue;  /* last Rayleigh quotient */
    int32_t iterations; /* HVPs done */
    int32_t converged;  /* 1: the last residual is within tol (or H v = 0); else 0 */
    double residual;    /* last |H v - lambda v| / |lambda| (0 when H v = 0) */
    double rel_change;  /* last |lambda_i - lambda_{i-1}| / |lambda_i| (NaN after one iteration) */
};

/* Fill cfg from a preset (seed 0). */
void eig_power_config_preset(struct eig_power_config *cfg, enum eig_power_preset preset);

/* "paper" / "accurate" to a preset: 0 or RT_ERR_CONFIG naming the value. */
int eig_power_preset_parse(const char *name, enum eig_power_preset *out);

/* Allocate the work buffers for vectors of n floats (n > 0). NULL on a bad configuration or no
 * memory (detail in rt_err_msg()). Caller owns the result; free with eig_power_destroy. */
eig_power_t *eig_power_new(size_t n, const struct eig_power_config *cfg);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void eig_power_destroy(eig_power_t **self_p);

/* Restart the start-vector generator from seed (runs after a reseed repeat the same sequence). */
void eig_power_reseed(eig_power_t *self, uint64_t seed);

/*
 * Run the power iteration. Each run draws a fresh start vector from the generator (so a sequence
 * of runs is reproducible from the seed). Returns 0 and fills *res; the callback's negative code
 * if it fails; RT_ERR_FORMAT when the product is not finite (naming the iteration). No allocation.
 */
int eig_power_run(eig_power_t *self, eig_power_hvp_fn hvp, void *user,
                  struct eig_power_result *res);

/* The last iterate (unit vector, n floats). Valid until the next run or destroy. */
const float *eig_power_vector(const eig_power_t *self);

/* Vector length n. */
size_t eig_power_size(const eig_power_t *self);

#endif
